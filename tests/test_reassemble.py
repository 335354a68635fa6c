"""Reassembly: slice PNGs back to the original grid, exactly; ensembles; bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fusion.metrics import score_case
from fusion.reassemble import ReassembleOptions, reassemble, to_scan_grid
from fusion.views import fuse_case, read_views
from fusion.voting import VOTE_MODES
from slicer.datasets import load_dataset
from slicer.geometry import AXIS_OF, ORIENTATIONS, CaseGeometry, slice_image
from slicer.manifest import MANIFEST_COLUMNS

REASSEMBLE = str(Path(sys.executable).with_name("reassemble"))
# A scan stored neither RAS nor isotropic: axes permuted and flipped, 2 x 2 x 4 mm voxels.
OBLIQUE_AFFINE = np.array([[0, 0, -4.0, 60], [-2.0, 0, 0, 40], [0, 2.0, 0, -30], [0, 0, 0, 1]])


def _lesions(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A binary mask with a few blocky lesions (each well above 3 mm³)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    for _ in range(4):
        corner = [int(rng.integers(1, n - 4)) for n in shape]
        size = [int(rng.integers(2, 4)) for _ in shape]
        mask[tuple(slice(c, c + s) for c, s in zip(corner, size, strict=True))] = 1
    return mask


def write_mask_export(root: Path, case: str, mask: np.ndarray, affine: np.ndarray, spacing: float) -> Path:
    """A minimal export by the contract (manifest, cases/<case>.json, masks PNGs) from arrays."""
    geometry = CaseGeometry.from_affine(mask.shape, affine, spacing)
    geometry = geometry.with_crop([(1, n - 1) for n in geometry.resampled_shape]).with_extra(split="val")
    exported = geometry.to_export(mask, order=0)
    (root / "masks" / "val").mkdir(parents=True, exist_ok=True)
    rows = []
    for orientation in ORIENTATIONS:
        for index in range(geometry.shape[AXIS_OF[orientation]]):
            stem = f"{case}_{orientation}_{index:03d}"
            image = slice_image(exported, orientation, index).astype(np.uint8) * 255
            cv2.imwrite(str(root / "masks" / "val" / f"{stem}.png"), image)
            rows.append((stem, case, "val", orientation, index, *image.shape, "", int(image.sum() // 255), 0))
    manifest = root / "manifest.csv"
    table = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    if manifest.is_file():
        table = pd.concat([pd.read_csv(manifest, dtype={"crop": str}), table])
    table.to_csv(manifest, index=False)
    geometry.save(root / "cases" / f"{case}.json")
    return root / "masks" / "val"


@pytest.fixture(scope="module")
def mask_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """Two cases: an isotropic RAS one and the oblique anisotropic one, with their masks."""
    root = tmp_path_factory.mktemp("mask_export")
    truth = {"iso": _lesions((30, 34, 26)), "oblique": _lesions((18, 22, 14), seed=1)}
    write_mask_export(root, "iso", truth["iso"], np.diag([2.0, 2.0, 2.0, 1.0]), 2.0)
    write_mask_export(root, "oblique", truth["oblique"], OBLIQUE_AFFINE, 2.0)
    return root, truth


@pytest.mark.parametrize("vote", VOTE_MODES)
def test_round_trip_in_memory(mask_export: tuple[Path, dict[str, np.ndarray]], vote: str) -> None:
    root, truth = mask_export
    manifest = pd.read_csv(root / "manifest.csv")
    for case, mask in truth.items():
        geometry = CaseGeometry.load(root / "cases" / f"{case}.json")
        views = list(
            read_views(manifest[manifest["case"] == case], geometry, root / "masks" / "val").values()
        )
        assert len(views) == 3
        back, prob = to_scan_grid(
            geometry, *fuse_case(views, vote, min_size_mm3=0, spacing=geometry.spacing), 0.5, 0
        )
        np.testing.assert_array_equal(back, mask)
        assert prob.shape == mask.shape and prob.dtype == np.float32


def test_round_trip_files_and_ensemble(
    mask_export: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    root, truth = mask_export
    preds = shutil.copytree(root / "masks" / "val", tmp_path / "preds")
    out = tmp_path / "out"
    written = reassemble(ReassembleOptions(slices=root, preds=[preds, preds], out=out, save_prob=True))
    assert sorted(p.name for p in written) == ["iso.nii.gz", "oblique.nii.gz"]
    img = nib.load(out / "oblique.nii.gz")
    np.testing.assert_allclose(img.affine, OBLIQUE_AFFINE)
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(img.dataobj), truth["oblique"])
    scores = score_case(truth["oblique"], np.asarray(img.dataobj), (2.0, 2.0, 4.0))
    assert (scores["dice"], scores["f1"]) == (1.0, 1.0)
    assert nib.load(out / "oblique_prob.nii.gz").get_data_dtype() == np.float32


def _reslice_anisotropic(source: Path, target: Path) -> Path:
    """A copy of the phantom with every other axial plane dropped: 2 x 2 x 4 mm voxels."""
    target.mkdir()
    for path in source.rglob("*"):
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        elif path.name.endswith(".nii.gz"):
            img = nib.load(path)
            data = np.asarray(img.dataobj)[:, :, ::2]
            affine = img.affine @ np.diag([1.0, 1.0, 2.0, 1.0])
            nib.save(nib.Nifti1Image(data, affine, img.header), destination)
        else:
            shutil.copy(path, destination)
    return target


def _assert_masks_come_back(export: Path, dataset_root: Path, tmp_path: Path) -> int:
    """Reassemble an export's own mask PNGs with every vote mode; compare with the consensus."""
    preds = tmp_path / "preds"
    preds.mkdir()
    for png in export.glob("masks/*/*.png"):
        shutil.copy(png, preds)
    cases = [
        c for c in load_dataset("phantom", root=dataset_root) if (export / "cases" / f"{c.id}.json").is_file()
    ]
    assert cases, "the export wrote no case"
    for vote in VOTE_MODES:
        reassemble(ReassembleOptions(slices=export, preds=[preds], out=tmp_path / vote, vote=vote))
        for case in cases:
            truth = nib.load(case.consensus)
            result = nib.load(tmp_path / vote / f"{case.id}.nii.gz")
            np.testing.assert_array_equal(
                np.asarray(result.dataobj), np.asarray(truth.dataobj), f"{vote} {case.id}"
            )
            np.testing.assert_allclose(result.affine, truth.affine, atol=1e-5)
    return len(cases)


def test_real_export_round_trip(phantom_export: Path, phantom_root: Path, tmp_path: Path) -> None:
    assert _assert_masks_come_back(phantom_export, phantom_root, tmp_path) >= 2


def _export(root: Path, out: Path) -> Path:
    from slicer.export import ExportOptions, export_dataset

    export_dataset(ExportOptions(dataset="phantom", root=root, out=out, spacing=2.0, val_fraction=0.5))
    return out


def test_misaligned_export_round_trip(misaligned_phantom_root: Path, tmp_path: Path) -> None:
    export = _export(misaligned_phantom_root, tmp_path / "export")
    assert _assert_masks_come_back(export, misaligned_phantom_root, tmp_path) >= 1


def test_anisotropic_export_round_trip(phantom_root: Path, tmp_path: Path) -> None:
    anisotropic = _reslice_anisotropic(phantom_root, tmp_path / "anisotropic")
    export = _export(anisotropic, tmp_path / "export")
    assert CaseGeometry.load(next((export / "cases").glob("*.json"))).canonical_spacing == (2.0, 2.0, 4.0)
    assert _assert_masks_come_back(export, anisotropic, tmp_path) >= 1


def test_two_folders_vote_by_plane(mask_export: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    """A lesion only the axial plane of each of two folders sees has one plane's vote of 3."""
    root, truth = mask_export
    folders = [shutil.copytree(root / "masks" / "val", tmp_path / name) for name in ("a", "b")]
    geometry = CaseGeometry.load(root / "cases" / "iso.json")
    extra = np.zeros(geometry.shape, np.uint8)
    extra[20:23, 3:6, 10:13] = 255  # 27 voxels away from the true lesions (checked)
    assert not (geometry.to_export(truth["iso"], order=0)[19:24, 2:7, 9:14]).any()
    for folder in folders:
        for index in range(10, 13):
            path = folder / f"iso_axial_{index:03d}.png"
            cv2.imwrite(
                str(path),
                np.maximum(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), slice_image(extra, "axial", index)),
            )
    for min_votes, kept in ((1, True), (None, False)):
        out = tmp_path / f"out{min_votes}"
        reassemble(ReassembleOptions(slices=root, preds=folders, out=out, min_votes=min_votes, cases=["iso"]))
        result = np.asarray(nib.load(out / "iso.nii.gz").dataobj)
        assert int(result.sum()) - int(truth["iso"].sum()) == (27 if kept else 0)


def test_rerun_skips_unless_overwrite(
    mask_export: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    root, _ = mask_export
    out = tmp_path / "out"
    options = ReassembleOptions(slices=root, preds=[root / "masks" / "val"], out=out, cases=["iso"])
    reassemble(options)
    (out / "iso.nii.gz").write_bytes(b"sentinel")
    reassemble(options)
    assert (out / "iso.nii.gz").read_bytes() == b"sentinel"
    options.overwrite = True
    reassemble(options)
    assert nib.load(out / "iso.nii.gz").shape == (30, 34, 26)


def test_rerun_with_other_settings_refuses(
    mask_export: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    root, _ = mask_export
    out = tmp_path / "out"
    base = [REASSEMBLE, "--slices", str(root), "--preds", str(root / "masks" / "val"), "--out", str(out)]
    assert subprocess.run(base, capture_output=True, timeout=120).returncode == 0
    record = json.loads((out / "provenance.json").read_text())
    assert record["thresholds"] == [0.5] and record["vote"] == "triplanar"  # no provenance: 0.5
    result = subprocess.run([*base, "--vote", "mean"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {out / 'provenance.json'}: was made with other vote; use --overwrite or another output folder"
    )
    assert json.loads((out / "provenance.json").read_text()) == record


def test_threshold_from_the_folders_provenance(
    mask_export: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    """A folder recorded as YOLO's is thresholded at 0.25 without --threshold."""
    root, truth = mask_export
    preds = shutil.copytree(root / "masks" / "val", tmp_path / "yolo")
    for path in preds.glob("iso_*.png"):  # every lesion at probability 0.3
        cv2.imwrite(str(path), (cv2.imread(str(path), cv2.IMREAD_UNCHANGED) > 0).astype(np.uint8) * 77)
    options = ReassembleOptions(slices=root, preds=[preds], out=tmp_path / "plain", cases=["iso"])
    reassemble(options)
    assert not np.asarray(nib.load(tmp_path / "plain" / "iso.nii.gz").dataobj).any()  # 0.3 < 0.5
    (preds / "provenance.json").write_text(json.dumps({"tool": "yolo-long predict", "threshold": 0.25}))
    options.out = tmp_path / "yolo_point"
    reassemble(options)
    assert np.array_equal(np.asarray(nib.load(options.out / "iso.nii.gz").dataobj), truth["iso"])


def _break(kind: str, root: Path, preds: Path) -> None:
    if kind == "wrong size":
        cv2.imwrite(str(preds / "iso_axial_005.png"), np.zeros((7, 7), np.uint8))
    elif kind == "colour":
        cv2.imwrite(str(preds / "iso_axial_005.png"), np.zeros((16, 14, 3), np.uint8))
    elif kind == "16-bit":
        path = preds / "iso_axial_005.png"
        shape = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape
        cv2.imwrite(str(path), np.full(shape, 300, np.uint16))
    elif kind == "no predictions":
        for path in preds.glob("iso_*.png"):
            path.unlink()
    elif kind == "missing column":
        pd.read_csv(root / "manifest.csv").drop(columns="width").to_csv(root / "manifest.csv", index=False)
    elif kind == "missing case json":
        (root / "cases" / "iso.json").unlink()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("wrong size", "differs from the exported slice"),
        ("colour", "not an 8-bit single-channel PNG"),
        ("16-bit", "not an 8-bit single-channel PNG"),
        ("no predictions", "no prediction for case 'iso'"),
        ("missing column", "lacks column(s) width"),
        ("missing case json", "case geometry file not found"),
    ],
)
def test_bad_input_one_line_exit_2(
    mask_export: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, kind: str, message: str
) -> None:
    source, _ = mask_export
    root = shutil.copytree(source, tmp_path / "export")
    preds = shutil.copytree(source / "masks" / "val", tmp_path / "preds")
    _break(kind, root, preds)
    out = tmp_path / "out"
    command = [REASSEMBLE, "--slices", str(root), "--preds", str(preds), "--out", str(out), "--cases", "iso"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]  # above it only the progress bar, cleared
    assert last.startswith("error: ") and message in last and "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_one_threshold_per_folder(mask_export: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    """A folder whose maps peak at 0.3 (a timid model) votes only at its own threshold.

    The confident folder sees the lesions on the axial plane only: one plane's vote of the two
    needed, unless the timid folder's coronal and sagittal maps count.
    """
    root, truth = mask_export
    confident = shutil.copytree(root / "masks" / "val", tmp_path / "confident")
    timid = tmp_path / "timid"
    timid.mkdir()
    for png in confident.glob("iso_*.png"):
        image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(timid / png.name), (image > 0).astype(np.uint8) * 77)
        if "_axial_" not in png.name:
            cv2.imwrite(str(png), np.zeros_like(image))
    for threshold, expected in (([0.5, 0.25], truth["iso"].sum()), ([0.5], 0)):
        out = tmp_path / f"out{len(threshold)}"
        options = ReassembleOptions(
            slices=root, preds=[confident, timid], out=out, threshold=threshold, cases=["iso"]
        )
        reassemble(options)
        assert np.asarray(nib.load(out / "iso.nii.gz").dataobj).sum() == expected
    command = [REASSEMBLE, "--slices", str(root), "--preds", str(confident), str(timid)]
    command += ["--out", str(tmp_path / "bad"), "--threshold", "0.5", "0.25", "0.1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "one per model (2), not 3" in result.stderr.strip()
    assert not (tmp_path / "bad").exists()


def test_old_lesion_is_dropped(phantom_export: Path, phantom_root: Path, tmp_path: Path) -> None:
    """A prediction on a lesion already there at baseline is not new: dropped unless keep_existing."""
    manifest = pd.read_csv(phantom_export / "manifest.csv")
    val = manifest[manifest["split"] == "val"]
    case = val["case"].iloc[0]
    rows = val[val["case"] == case]
    geometry = CaseGeometry.load(phantom_export / "cases" / f"{case}.json")
    truth_img = nib.load(phantom_root / case / "ground_truth.nii.gz")
    consensus = np.asarray(truth_img.dataobj)
    # The phantom's largest old lesion, as a network marking it would: a ball at its centre.
    details = json.loads((phantom_root / case / "phantom.json").read_text())
    largest = int(np.argmax(details["existing_lesion_mm3"]))
    centre = np.asarray(details["existing_lesion_centres_mm"][largest])
    radius_mm = (3 * details["existing_lesion_mm3"][largest] / (4 * np.pi)) ** (1 / 3)
    voxels = np.stack(np.indices(consensus.shape), -1) @ truth_img.affine[:3, :3].T + truth_img.affine[:3, 3]
    old = np.linalg.norm(voxels - centre, axis=-1) <= radius_mm
    assert old.sum() > 4 and not (old & (consensus > 0)).any()
    predicted = geometry.to_export(np.maximum(consensus, old).astype(np.uint8), order=0) * np.uint8(255)
    preds = tmp_path / "preds"
    preds.mkdir()
    for row in rows.itertuples():
        cv2.imwrite(str(preds / f"{row.stem}.png"), slice_image(predicted, row.orientation, row.index))
    results = {}
    for keep in (False, True):
        out = tmp_path / f"keep{keep}"
        options = ReassembleOptions(
            slices=phantom_export, preds=[preds], out=out, cases=[case], keep_existing=keep
        )
        reassemble(options)
        results[keep] = np.asarray(nib.load(out / f"{case}.nii.gz").dataobj)
    np.testing.assert_array_equal(results[False], consensus)
    assert results[True].sum() > consensus.sum() + old.sum() // 2
