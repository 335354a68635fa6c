"""nnU-Net v2 as the 3D model: the raw dataset nnU-Net accepts, its predictions as a view in the vote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fusion.volumes import (
    NnUNetModel,
    check_nnunet_predictions,
    is_nnunet_folder,
    is_nnunet_model,
    load_nnunet_model,
    read_nnunet_view,
)
from fusion.voting import VOLUME, fuse_views
from runtime.errors import InputError
from slicer.cli import main
from slicer.datasets import load_dataset
from slicer.export import ExportOptions, assign_splits
from slicer.geometry import CaseGeometry
from slicer.io import load_mask
from slicer.nnunet import export_nnunet, verify_raw_dataset

SPACING = 2.0
VAL_FRACTION = 0.5
NAME = "Dataset501_phantom"


def _argv(root: Path, out: Path, *flags: str) -> list[str]:
    return ["export-nnunet", "--dataset", "phantom", "--root", str(root), "--out", str(out), *flags]


@pytest.fixture(scope="module")
def nnunet_raw(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``slicer export-nnunet`` of the 4-case phantom with the difference channel: the nnUNet_raw folder."""
    out = tmp_path_factory.mktemp("nnUNet_raw")
    main(
        _argv(
            phantom_root,
            out,
            "--id",
            "501",
            "--spacing",
            str(SPACING),
            "--val-fraction",
            str(VAL_FRACTION),
            "--diff",
        )
    )
    return out


def test_nnunets_own_integrity_check_accepts_the_export(nnunet_raw: Path) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    folder = nnunet_raw / NAME
    verify_dataset_integrity(str(folder), num_processes=1)  # raises on any problem
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "t0", "1": "t1", "2": "diff"}
    assert dataset["labels"] == {"background": 0, "new_lesion": 1} and dataset["file_ending"] == ".nii.gz"
    assert dataset["numTraining"] == 4 == len(list((folder / "labelsTr").iterdir()))
    assert sorted(p.name for p in nnunet_raw.iterdir()) == [NAME]  # no temporary folder left


def test_fold_zero_validates_on_our_validation_cases(nnunet_raw: Path, phantom_root: Path) -> None:
    cases = load_dataset("phantom", root=phantom_root)
    ours = assign_splits(cases, VAL_FRACTION, seed=0)  # what slicer export assigns with these flags
    folds = json.loads((nnunet_raw / NAME / "splits_final.json").read_text())
    assert folds == [{part: sorted(c for c, s in ours.items() if s == part) for part in ("train", "val")}]
    assert folds[0]["val"] and folds[0]["train"]


def test_volumes_on_the_follow_ups_own_grid(nnunet_raw: Path, phantom_root: Path) -> None:
    case, folder = sorted(p.name for p in phantom_root.iterdir() if p.is_dir())[0], nnunet_raw / NAME
    truth, truth_img = load_mask(phantom_root / case / "ground_truth.nii.gz")
    label = nib.load(folder / "labelsTr" / f"{case}.nii.gz")
    np.testing.assert_array_equal(np.asarray(label.dataobj), truth)
    for channel in range(3):
        image = nib.load(folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
        assert image.shape == truth.shape and np.allclose(image.affine, truth_img.affine)
    t0, t1 = (np.asarray(nib.load(folder / "imagesTr" / f"{case}_{c:04d}.nii.gz").dataobj) for c in (0, 1))
    assert t1[truth > 0].mean() > t0[truth > 0].mean() + 20  # new lesions: bright at follow-up only


def test_test_cases_go_to_images_ts(phantom_root: Path, tmp_path: Path) -> None:
    options = ExportOptions(dataset="phantom", root=phantom_root, out=tmp_path, spacing=4.0, split="test")
    summary = export_nnunet(options, 503, diff=False)
    folder = tmp_path / "Dataset503_phantom"
    assert (summary.training, summary.test) == (0, 4) and "nothing to verify" in summary.line()
    assert len(list((folder / "imagesTs").glob("*_0000.nii.gz"))) == 4
    assert not any((folder / "imagesTr").iterdir()) and not any((folder / "labelsTr").iterdir())
    assert not (folder / "splits_final.json").exists()
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 0


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


def test_an_id_taken_by_another_name_is_refused(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dataset501_Other").mkdir()
    lines = _run(_argv(phantom_root, tmp_path, "--id", "501"), capsys)
    assert len(lines) == 1 and "Dataset501_Other" in lines[0] and "taken" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset501_Other"]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--id", "1000"], "1 to 999"),
        (["--id", "7", "--label", "soft"], "integer labels"),
        (["--id", "7", "--name", "a b"], "--name"),
    ],
)
def test_bad_options(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: str
) -> None:
    lines = _run(_argv(phantom_root, tmp_path, *flags), capsys)
    assert len(lines) == 1 and words in lines[0]
    assert not any(tmp_path.iterdir())


def test_an_existing_dataset_needs_overwrite(nnunet_raw: Path, phantom_root: Path) -> None:
    options = ExportOptions(dataset="phantom", root=phantom_root, out=nnunet_raw, spacing=SPACING)
    with pytest.raises(InputError, match="--overwrite"):
        export_nnunet(options, 501)


def test_a_dataset_nnunet_refuses_leaves_nothing(
    phantom_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Declare no lesion label: nnU-Net's check then finds unexpected labels in labelsTr.
    monkeypatch.setattr("slicer.nnunet.LABELS", {"background": 0})
    one_case = tmp_path / "phantom"
    with_lesions = [p for p in sorted(phantom_root.glob("*/ground_truth.nii.gz")) if load_mask(p)[0].any()]
    case = with_lesions[0].parent
    shutil.copytree(case, one_case / case.name)
    options = ExportOptions(dataset="phantom", root=one_case, out=tmp_path / "raw", spacing=4.0)
    with pytest.raises(InputError, match="verify_dataset_integrity refused it: Error: Unexpected labels"):
        export_nnunet(options, 502)
    assert not any((tmp_path / "raw").iterdir())


def test_a_broken_raw_folder_is_one_line(nnunet_raw: Path, tmp_path: Path) -> None:
    broken = tmp_path / NAME
    shutil.copytree(nnunet_raw / NAME, broken)
    next((broken / "labelsTr").iterdir()).unlink()
    with pytest.raises(InputError, match="refused it: .*label file"):
        verify_raw_dataset(broken)


# ----------------------------------------------------------------- nnU-Net predictions as a view

SHAPE = (14, 16, 12)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _geometry() -> CaseGeometry:
    """An export grid that crops the scan's own 2 mm grid by one voxel on each side of x and y."""
    return CaseGeometry.from_affine(SHAPE, AFFINE, spacing=2.0).with_crop(((1, 13), (1, 15), (0, 12)))


def _prediction_folder(folder: Path, cases: dict[str, np.ndarray], shape: tuple[int, ...] = SHAPE) -> Path:
    """What ``nnUNetv2_predict --save_probabilities`` writes: segmentations, (c, z, y, x) probabilities."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predict_from_raw_data_args.json").write_text("{}")
    (folder / "plans.json").write_text("{}")
    for case, foreground in cases.items():
        nib.save(nib.Nifti1Image((foreground > 0.5).astype(np.uint8), AFFINE), folder / f"{case}.nii.gz")
        probabilities = np.stack([1 - foreground, foreground]).transpose(0, 3, 2, 1)
        np.savez_compressed(folder / f"{case}.npz", probabilities=probabilities.astype(np.float32))
    return folder


def _blob(corner: tuple[int, int, int], size: int = 2, value: float = 0.9) -> np.ndarray:
    volume = np.zeros(SHAPE, np.float32)
    volume[tuple(slice(c, c + size) for c in corner)] = value
    return volume


def test_prediction_folder_becomes_an_export_grid_view(tmp_path: Path) -> None:
    foreground = _blob((3, 4, 5), value=0.8) + _blob((9, 2, 1), value=0.3)
    folder = _prediction_folder(tmp_path / "preds", {"013": foreground})
    assert is_nnunet_folder(folder) and not is_nnunet_model(folder)
    view = read_nnunet_view(folder, "013", _geometry())
    np.testing.assert_allclose(view, foreground[1:13, 1:15, :], atol=1e-6)  # probabilities, cropped
    (folder / "013.npz").unlink()  # without --save_probabilities: the segmentation itself
    np.testing.assert_array_equal(
        read_nnunet_view(folder, "013", _geometry()), (foreground[1:13, 1:15] > 0.5)
    )


def test_png_folders_are_not_nnunet(tmp_path: Path) -> None:
    (tmp_path / "013_axial_000.png").write_bytes(b"")
    assert not is_nnunet_folder(tmp_path)


def test_predictions_of_other_cases_or_grids_are_refused(tmp_path: Path) -> None:
    folder = _prediction_folder(tmp_path / "preds", {"013": _blob((3, 3, 3))})
    with pytest.raises(InputError, match="no nnU-Net prediction for case.* 015"):
        check_nnunet_predictions(folder, {"013": _geometry(), "015": _geometry()})
    other = _prediction_folder(tmp_path / "other", {"013": np.zeros((14, 16, 11), np.float32)})
    with pytest.raises(InputError, match="grid 14x16x11 is not the case's follow-up grid 14x16x12"):
        read_nnunet_view(other, "013", _geometry())
    moved = CaseGeometry.from_affine(SHAPE, AFFINE @ np.diag([1.0, 1.0, 1.1, 1.0]), spacing=2.0)
    with pytest.raises(InputError, match="affine differs"):
        check_nnunet_predictions(folder, {"013": moved})


class _EchoPredictor:
    """Stands in for nnUNetPredictor: the foreground probability is the t1 channel / 255."""

    def __init__(self) -> None:
        self.spacing: list[float] = []

    def predict_single_npy_array(self, image, properties, previous, output, probabilities):  # noqa: ANN001
        self.spacing = properties["spacing"]
        foreground = image[1] / 255.0  # channels t0, t1 in nnU-Net's (c, z, y, x)
        return foreground > 0.5, np.stack([1 - foreground, foreground])


def test_model_view_follows_nnunets_axis_order(tmp_path: Path) -> None:
    geometry = CaseGeometry.from_affine(SHAPE, np.diag([1.0, 2.0, 3.0, 1.0]), spacing=1.0)
    rng = np.random.default_rng(0)
    volumes = {s: rng.integers(0, 256, geometry.shape, dtype=np.uint8) for s in ("t0", "t1")}
    predictor = _EchoPredictor()
    view = NnUNetModel(tmp_path, ("t0", "t1"), predictor).predict(geometry, volumes)
    assert predictor.spacing == [3.0, 2.0, 1.0]  # (z, y, x), as SimpleITK reads the raw files
    expected = geometry.to_export(geometry.to_original(volumes["t1"].astype(np.float32), order=1) / 255.0)
    np.testing.assert_allclose(view, np.rint(expected * 255) / 255, atol=2 / 255)


def test_a_folder_that_is_no_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a trained nnU-Net model folder"):
        load_nnunet_model(tmp_path)
    (tmp_path / "plans.json").write_text("{}")
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T2", "1": "ADC"}}))
    (tmp_path / "fold_0").mkdir()
    (tmp_path / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    with pytest.raises(InputError, match="not those of slicer export-nnunet"):
        load_nnunet_model(tmp_path)


# ---------------------------------------------------------------------- the 3D view in the vote

PLANES = ["axial", "coronal", "sagittal"]


def _votes(tmp_path: Path) -> tuple[list[np.ndarray], dict[str, tuple[int, int, int]]]:
    """Three planes and an nnU-Net prediction folder's view; each lesion is seen by other voters."""
    lesions = {
        "1 plane + 3D": (1, 1, 1),
        "2 planes": (1, 10, 1),
        "3D alone": (9, 1, 7),
        "3 planes": (9, 10, 7),
    }
    seen_by = {
        "1 plane + 3D": {"axial", VOLUME},
        "2 planes": {"axial", "coronal"},
        "3D alone": {VOLUME},
        "3 planes": set(PLANES),
    }
    voters = {voter: np.zeros(SHAPE, np.float32) for voter in [*PLANES, VOLUME]}
    for name, at in lesions.items():
        for voter in seen_by[name]:
            voters[voter] += _blob(at)
    geometry = CaseGeometry.from_affine(SHAPE, AFFINE, spacing=2.0)
    folder = _prediction_folder(tmp_path / "nnunet", {"013": voters[VOLUME]})
    views = [voters[p] for p in PLANES] + [read_nnunet_view(folder, "013", geometry)]
    return views, lesions


@pytest.mark.parametrize(
    ("rule", "survivors"),
    [("voter", {"1 plane + 3D", "2 planes", "3 planes"}), ("tiebreak", {"1 plane + 3D", "3 planes"})],
)
def test_the_3d_view_in_the_lesion_wise_vote(tmp_path: Path, rule: str, survivors: set[str]) -> None:
    views, lesions = _votes(tmp_path)
    mask, _ = fuse_views(views, planes=[*PLANES, VOLUME], volume_rule=rule, min_size_mm3=0)
    kept = {name for name, at in lesions.items() if mask[at]}
    assert kept == survivors


def test_two_3d_views_merge_into_one_voter(tmp_path: Path) -> None:
    views, lesions = _votes(tmp_path)
    twice = [*views, views[-1]]
    mask, _ = fuse_views(twice, planes=[*PLANES, VOLUME, VOLUME], min_size_mm3=0)
    assert not mask[lesions["3D alone"]]  # one 3D model counted twice would pass 2 of 5


def test_reassemble_votes_an_nnunet_folder_with_png_planes(
    phantom_export: Path, phantom_root: Path, tmp_path: Path
) -> None:
    """``reassemble --preds PNGS NNUNET``: 3 planes + the 3D view, 2 of 4 votes; a blob only nnU-Net sees goes."""
    from scipy import ndimage

    from fusion.reassemble import ReassembleOptions, reassemble

    cases = {c.id: c for c in load_dataset("phantom", root=phantom_root)}
    manifest = pd.read_csv(phantom_export / "manifest.csv", dtype={"case": str})
    val = sorted(manifest.loc[manifest["split"] == "val", "case"].unique())
    nnunet = tmp_path / "nnunet"
    nnunet.mkdir()
    (nnunet / "predict_from_raw_data_args.json").write_text("{}")
    truth = {}
    for case in val:
        img = nib.load(cases[case].consensus)
        truth[case] = np.asarray(img.dataobj) > 0
        brain = load_mask(cases[case].brain_mask)[0] > 0
        free = ndimage.binary_erosion(brain, iterations=4) & ~ndimage.binary_dilation(
            truth[case], iterations=4
        )
        x, y, z = np.argwhere(free)[len(np.argwhere(free)) // 2]
        extra = truth[case].copy()
        extra[x - 1 : x + 2, y - 1 : y + 2, z - 1 : z + 2] = (
            True  # in the brain, where no plane sees a lesion
        )
        nib.save(nib.Nifti1Image(extra.astype(np.uint8), img.affine), nnunet / f"{case}.nii.gz")
    out = tmp_path / "seg"
    reassemble(
        ReassembleOptions(
            slices=phantom_export,
            preds=[phantom_export / "masks" / "val", nnunet],
            out=out,
            split="val",
            keep_existing=True,
        )
    )
    record = json.loads((out / "provenance.json").read_text())
    assert record["thresholds"] == [0.5, 0.5]
    for case in val:
        np.testing.assert_array_equal(np.asarray(nib.load(out / f"{case}.nii.gz").dataobj) > 0, truth[case])
