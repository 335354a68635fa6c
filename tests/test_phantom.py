"""The synthetic longitudinal FLAIR phantom: layout, contrast, lesions, raters, determinism,
and the realistic mode (head, thick slices, integer storage, t0's shorter field of view, ids)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from runtime.errors import InputError
from runtime.lesions import count_lesions
from simulation.phantom import BRAIN_MASK_NAME, COLUMNS, T0_NAME, T1_NAME, write_phantom
from simulation.phantom.acquisition import FieldOfViewCut, field_of_view_mask, thick_affine, thicken
from simulation.phantom.anatomy import load_atlas, render_tissue
from simulation.phantom.blobs import random_blob, rasterise
from simulation.phantom.head import HeadLayers, head_signal, load_head_model, one_hot, place_head
from simulation.phantom.raters import consensus
from simulation.phantom.scanners import PROFILES
from slicer.cli import main as slicer_main
from slicer.datasets import load_dataset
from slicer.io import load_mask, load_volume, spacing_of
from slicer.summary import case_table

CASE_FILES = [T0_NAME, T1_NAME, "ground_truth.nii.gz", BRAIN_MASK_NAME, "phantom.json"] + [
    f"ground_truth_expert{r}.nii.gz" for r in range(1, 5)
]
REALISTIC_IDS = ["013", "015", "017", "019"]


def _cases(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "cases.csv", dtype={"case": str})


def _world_to_voxel(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    inverse = np.linalg.inv(affine)
    return np.rint(np.asarray(points) @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)


def _white_matter_level(image: np.ndarray, affine: np.ndarray, folder: Path) -> float:
    """Median of the case's pure white matter, found through the subject's own transform."""
    to_atlas = np.array(json.loads((folder / "phantom.json").read_text())["subject_to_mni_world"])
    wm = render_tissue(load_atlas(), np.array([0.0, 0.0, 1.0]), image.shape, affine, to_atlas) > 0.95
    return float(np.median(image[wm]))


def test_layout_and_registry(phantom_root: Path) -> None:
    table = _cases(phantom_root)
    assert list(table.columns) == COLUMNS
    assert list(table["case"]) == ["case000", "case001", "case002", "case003"]
    for case in table["case"]:
        present = sorted(p.name for p in (phantom_root / case).iterdir())
        assert present == sorted(CASE_FILES)
    cases = load_dataset("phantom", root=phantom_root)
    assert [c.id for c in cases] == list(table["case"])
    assert [c.scanner for c in cases] == list(table["scanner"])
    assert all(c.split is None and len(c.raters) == 4 for c in cases)
    t1 = nib.load(cases[0].t1)
    assert t1.shape == (98, 116, 94)
    assert nib.aff2axcodes(t1.affine) == ("R", "A", "S")
    assert np.allclose(spacing_of(t1.affine), 2.0)
    assert t1.get_data_dtype() in (np.int16, np.float32)


def test_counts_match_consensus(phantom_root: Path) -> None:
    table = _cases(phantom_root).set_index("case")
    assert (table["new_lesions"] == 0).sum() >= 1
    assert (table["new_lesions"] > 0).sum() >= 2
    for case in table.index:
        mask, img = load_mask(phantom_root / case / "ground_truth.nii.gz")
        assert count_lesions(mask, spacing_of(img.affine)) == table.loc[case, "new_lesions"]
        assert int(mask.sum()) == table.loc[case, "new_lesion_voxels"]
    summary = case_table("phantom", root=phantom_root).set_index("case")
    assert (summary["new_lesions"] == table["new_lesions"]).all()


def test_new_lesions_appear_at_t1_only(phantom_root: Path) -> None:
    table = _cases(phantom_root)
    for case in table.loc[table["new_lesions"] > 0, "case"]:
        folder = phantom_root / case
        mask = load_mask(folder / "ground_truth.nii.gz")[0] > 0
        contrast = []
        for name in (T0_NAME, T1_NAME):
            image, img = load_volume(folder / name)
            contrast.append(image[mask].mean() / _white_matter_level(image, img.affine, folder))
        assert contrast[1] > 1.3, case  # hyperintense at follow-up...
        assert contrast[1] > contrast[0] + 0.25, case  # ... and not at baseline


def test_existing_lesions_bright_at_both_times(phantom_root: Path) -> None:
    checked = 0
    for case in _cases(phantom_root)["case"]:
        folder = phantom_root / case
        details = json.loads((folder / "phantom.json").read_text())
        volumes = np.array(details["existing_lesion_mm3"])
        centres = np.array(details["existing_lesion_centres_mm"])[volumes > 30]  # a voxel or more
        for name in (T0_NAME, T1_NAME):
            image, img = load_volume(folder / name)
            at = tuple(_world_to_voxel(centres, img.affine).T)
            assert (image[at] > 1.2 * _white_matter_level(image, img.affine, folder)).all(), (case, name)
        checked += len(centres)
    assert checked >= 10


def test_consensus_is_three_of_four_majority(phantom_root: Path) -> None:
    disagreements = 0
    for case in _cases(phantom_root)["case"]:
        folder = phantom_root / case
        raters = [load_mask(folder / f"ground_truth_expert{r}.nii.gz")[0] for r in range(1, 5)]
        agreed = load_mask(folder / "ground_truth.nii.gz")[0]
        assert np.array_equal(agreed, consensus(raters))
        assert np.array_equal(agreed, (np.sum(raters, axis=0) >= 3).astype(np.uint8))
        disagreements += sum(int((r != agreed).sum()) for r in raters)
    assert disagreements > 0  # the raters are not copies of the consensus


def test_same_seed_same_bytes_other_seed_differs(phantom_root: Path, tmp_path: Path) -> None:
    # One case alone must equal case000 of the 4-case fixture: cases do not depend on each other.
    write_phantom(tmp_path / "again", cases=1, voxel=2.0, seed=0)
    for name in CASE_FILES:
        assert (tmp_path / "again/case000" / name).read_bytes() == (
            phantom_root / "case000" / name
        ).read_bytes()
    write_phantom(tmp_path / "other", cases=1, voxel=2.0, seed=7)
    assert (tmp_path / "other/case000" / T1_NAME).read_bytes() != (
        phantom_root / "case000" / T1_NAME
    ).read_bytes()


def test_rerun_skips_finished_cases_and_refuses_other_settings(tmp_path: Path) -> None:
    first = write_phantom(tmp_path, cases=1, voxel=4.0, seed=2)
    written = (tmp_path / "case000" / T1_NAME).stat().st_mtime_ns
    again = write_phantom(tmp_path, cases=1, voxel=4.0, seed=2)
    assert (tmp_path / "case000" / T1_NAME).stat().st_mtime_ns == written
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(InputError, match="case000.*--overwrite"):
        write_phantom(tmp_path, cases=1, voxel=4.0, seed=3)
    write_phantom(tmp_path, cases=1, voxel=4.0, seed=3, overwrite=True)
    assert (tmp_path / "case000" / T1_NAME).stat().st_mtime_ns != written
    assert not list(tmp_path.glob(".tmp-*"))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--cases"):
        write_phantom(tmp_path, cases=0)
    with pytest.raises(InputError, match="--voxel"):
        write_phantom(tmp_path, voxel=-1.0)


def _correlation(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.corrcoef(a[where], b[where])[0, 1])


def _t0_seen_from_t1(t0: np.ndarray, affine: np.ndarray, t1_to_t0: np.ndarray) -> np.ndarray:
    """t0 resampled onto the t1 grid: each t1 voxel reads t0 at the point its anatomy moved to."""
    voxel_map = np.linalg.inv(affine) @ t1_to_t0 @ affine
    return ndimage.affine_transform(t0, voxel_map[:3, :3], offset=voxel_map[:3, 3], order=1)


def test_misalignment_is_known_and_undoable(misaligned_phantom_root: Path) -> None:
    table = _cases(misaligned_phantom_root)
    assert table["misaligned"].all()
    for case in table["case"]:
        folder = misaligned_phantom_root / case
        record = json.loads((folder / "misalignment.json").read_text())
        assert set(record) == {"t1_to_t0_world", "rotation_deg", "translation_mm", "center_mm"}
        assert np.linalg.norm(record["translation_mm"]) <= 5.0 + 1e-6
        assert np.abs(record["rotation_deg"]).max() <= 5.0 + 1e-6
        t0, img = load_volume(folder / T0_NAME)
        t1, _ = load_volume(folder / T1_NAME)
        brain = t1 > np.percentile(t1, 60)
        matrix = np.array(record["t1_to_t0_world"])
        raw = _correlation(t1, t0, brain)
        undone = _correlation(t1, _t0_seen_from_t1(t0, img.affine, matrix), brain)
        wrong_way = _correlation(t1, _t0_seen_from_t1(t0, img.affine, np.linalg.inv(matrix)), brain)
        assert undone > raw + 0.05, case
        assert undone > wrong_way + 0.05, case


def test_small_lesion_survives_coarse_voxels() -> None:
    rng = np.random.default_rng(0)
    for voxel in (1.0, 1.5, 2.0, 3.0):
        blob = random_blob(rng, np.array([0.3, -0.2, 0.1]), volume_mm3=3.5)
        affine = np.diag([voxel, voxel, voxel, 1.0])
        affine[:3, 3] = -10 * voxel
        patch = rasterise(blob, (20, 20, 20), affine, voxel)
        mask = np.zeros((20, 20, 20), np.uint8)
        mask[patch.where] = patch.mask
        assert count_lesions(mask, (voxel,) * 3) == 1, voxel
        # Partial volume: the blob darkens nothing and brightens at most its share of a voxel.
        assert 0 < patch.fraction.max() <= min(1.0, 3.5 / voxel**3) + 1e-6


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_scanner_profiles_have_flair_contrast(name: str) -> None:
    profile = PROFILES[name]
    assert profile.csf < profile.wm < profile.gm < profile.lesion


@pytest.mark.parametrize("fixture", ["phantom_root", "realistic_phantom_root", "thick_phantom_root"])
def test_brain_mask_is_registered_and_holds_the_lesions(fixture: str, request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(fixture)
    for case in load_dataset("phantom", root=root):  # also checks every mask is on the t1 grid
        assert case.brain_mask == root / case.id / BRAIN_MASK_NAME
        brain = load_mask(case.brain_mask)[0] > 0
        agreed = load_mask(case.consensus)[0] > 0
        assert brain.mean() > 0.15, case.id
        assert not (agreed & ~brain).any(), case.id  # new lesions lie in white matter


def _realistic(folder: Path) -> dict:
    return json.loads((folder / "phantom.json").read_text())["realistic"]


def test_realistic_layout_storage_and_ids(realistic_phantom_root: Path) -> None:
    table = _cases(realistic_phantom_root)
    assert list(table["case"]) == REALISTIC_IDS
    assert pd.read_csv(realistic_phantom_root / "cases.csv")["case"].tolist() == [13, 15, 17, 19]  # the trap
    cases = load_dataset("phantom", root=realistic_phantom_root)
    assert [c.id for c in cases] == REALISTIC_IDS
    dtypes = set()
    for case in cases:
        assert sorted(p.name for p in (realistic_phantom_root / case.id).iterdir()) == sorted(CASE_FILES)
        for path, name in ((case.t0, "storage_t0"), (case.t1, "storage_t1")):
            img = nib.load(path)
            assert img.get_data_dtype() in (np.uint16, np.int16)
            assert img.get_data_dtype() == np.dtype(_realistic(path.parent)[name])
            dtypes.add(img.get_data_dtype())
        t1 = nib.load(case.t1)
        assert t1.shape == (120, 120, 104)
        assert np.allclose(spacing_of(t1.affine), 2.0)
    assert dtypes == {np.dtype(np.uint16), np.dtype(np.int16)}


def _outside_brain_mm(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) of every voxel from the case's brain mask, and the mask's affine."""
    brain, img = load_mask(folder / BRAIN_MASK_NAME)
    return ndimage.distance_transform_edt(brain == 0, sampling=spacing_of(img.affine)), img.affine


def test_realistic_head_surrounds_the_brain(realistic_phantom_root: Path) -> None:
    for case in REALISTIC_IDS:
        folder = realistic_phantom_root / case
        t1, img = load_volume(folder / T1_NAME)
        wm = _white_matter_level(t1, img.affine, folder)
        outside, _ = _outside_brain_mm(folder)
        scalp = t1[(outside > 8) & (outside < 20)]
        assert np.percentile(scalp, 90) > 0.9 * wm, case  # bright marrow and fat around the brain
        air = np.concatenate([t1[:4].ravel(), t1[-4:].ravel()])  # 20 mm of air left and right of the head
        assert np.median(air) < 0.15 * wm, case


def test_realistic_bone_is_darker_than_marrow_and_fat(realistic_phantom_root: Path) -> None:
    atlas, model = load_atlas(), load_head_model()
    for case in REALISTIC_IDS:
        folder = realistic_phantom_root / case
        t1, img = load_volume(folder / T1_NAME)
        to_atlas = np.array(json.loads((folder / "phantom.json").read_text())["subject_to_mni_world"])
        layers = HeadLayers(**_realistic(folder)["head_layers_mm"])
        fields = place_head(model, t1.shape, img.affine, to_atlas)
        brain = render_tissue(atlas, np.ones(3), t1.shape, img.affine, to_atlas)
        level = {
            tissue: float(np.median(t1[head_signal(fields, brain, layers, one_hot(tissue), 2.0) > 0.8]))
            for tissue in ("bone", "marrow", "fat", "vitreous")
        }
        wm = _white_matter_level(t1, img.affine, folder)
        assert level["bone"] < 0.5 * min(level["marrow"], level["fat"]), (case, level)
        assert min(level["marrow"], level["fat"]) > 0.8 * wm, (case, level, wm)  # bright as WM or more
        assert level["vitreous"] < 0.5 * wm, (case, level, wm)  # fluid, suppressed


def test_realistic_t0_is_zero_beyond_its_field_of_view(realistic_phantom_root: Path) -> None:
    for case in REALISTIC_IDS:
        folder = realistic_phantom_root / case
        t0, img = load_volume(folder / T0_NAME)
        t1, _ = load_volume(folder / T1_NAME)
        record = _realistic(folder)
        cuts = [
            FieldOfViewCut(c["side"], c["depth_mm"], np.array(c["point_mm"]), np.array(c["normal"]))
            for c in record["t0_field_of_view"]
        ]
        assert cuts[0].side == "inferior" and 10 <= cuts[0].depth_mm <= 30
        missing = ~field_of_view_mask(t0.shape, img.affine, cuts)
        assert int(missing.sum()) == record["t0_zero_filled_voxels"] > 0
        assert (t0[missing] == 0).all() and (t0[:, :, 0] == 0).all()
        wm = _white_matter_level(t1, img.affine, folder)
        assert (t1[missing] > 0.3 * wm).sum() > 1000, case  # t1 has the neck there, t0 has nothing
        assert (t0[~missing] > 0).mean() > 0.99, case


def test_thick_slices_give_an_anisotropic_grid(thick_phantom_root: Path) -> None:
    table = _cases(thick_phantom_root).set_index("case")
    assert list(table.index) == REALISTIC_IDS[:2]
    for case in load_dataset("phantom", root=thick_phantom_root):
        img = nib.load(case.t1)
        assert img.shape == (120, 120, 52)
        assert np.allclose(spacing_of(img.affine), (2.0, 2.0, 4.0))
        assert _realistic(case.t1.parent)["slice_thickness_mm"] == 4.0
        raters = [load_mask(p)[0] for p in case.raters]
        agreed = load_mask(case.consensus)[0]
        assert np.array_equal(agreed, consensus(raters))
        assert count_lesions(agreed, (2.0, 2.0, 4.0)) == table.loc[case.id, "new_lesions"]
    assert (table["new_lesions"] > 0).all()


def test_thicken_averages_slices_and_centres_the_grid() -> None:
    volume = np.arange(2 * 3 * 6, dtype=np.float32).reshape(2, 3, 6)
    assert np.array_equal(thicken(volume, 3), volume.reshape(2, 3, 2, 3).mean(axis=3))
    assert thicken(volume, 1) is volume
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = [-10.0, 0.0, 5.0]
    thick = thick_affine(affine, 3)
    assert np.allclose(spacing_of(thick), (1.5, 1.5, 4.5))
    assert np.allclose(thick[:3, 3], affine[:3, :3] @ [0, 0, 1] + affine[:3, 3])  # mean of slices 0, 1, 2


def test_realistic_case_is_deterministic_and_independent(
    realistic_phantom_root: Path, tmp_path: Path
) -> None:
    write_phantom(tmp_path, cases=1, voxel=2.0, seed=0, realistic=True)
    for name in CASE_FILES:
        assert (tmp_path / "013" / name).read_bytes() == (realistic_phantom_root / "013" / name).read_bytes()


def test_realistic_settings_are_checked(tmp_path: Path) -> None:
    write_phantom(tmp_path, cases=1, voxel=4.0, seed=0, realistic=True)
    with pytest.raises(InputError, match="013.*slice thickness mm None.*--overwrite"):
        write_phantom(tmp_path, cases=1, voxel=4.0, seed=0, realistic=True, slice_thickness=8.0)
    with pytest.raises(InputError, match="--slice-thickness.*needs --realistic"):
        write_phantom(tmp_path, cases=1, voxel=4.0, slice_thickness=8.0)
    with pytest.raises(InputError, match="--slice-thickness.*whole multiple"):
        write_phantom(tmp_path, cases=1, voxel=2.0, realistic=True, slice_thickness=3.0)


def test_cli_writes_a_thick_realistic_phantom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slicer_main(
        ["phantom", str(tmp_path), "--cases", "1", "--voxel", "4", "--realistic", "--slice-thickness", "8"]
    )
    assert nib.load(tmp_path / "013" / T1_NAME).shape == (60, 60, 26)
    with pytest.raises(SystemExit) as stop:
        slicer_main(["phantom", str(tmp_path / "other"), "--voxel", "4", "--slice-thickness", "8"])
    assert stop.value.code == 2
    assert "--slice-thickness: needs --realistic" in capsys.readouterr().err
