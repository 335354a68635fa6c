"""The 2D export contract: files, masks, labels, splits, ultralytics loading, re-runs, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from slicer.cli import main
from slicer.export import ExportOptions, export_dataset
from slicer.geometry import CaseGeometry, slice_image
from slicer.io import load_mask
from slicer.labels import component_polygons, count_components, yolo_lines
from slicer.writer import read_source_volume, source_channel

SPACING = 2.0


def _manifest(export: Path) -> pd.DataFrame:
    return pd.read_csv(export / "manifest.csv")


def test_yaml_and_channels(phantom_export: Path) -> None:
    content = yaml.safe_load((phantom_export / "phantom_long.yaml").read_text())
    assert content["path"] == str(phantom_export.resolve())
    assert content["channels"] == 9 and content["names"] == {0: "new_lesion"}
    assert content["mslong"]["channel_groups"] == {"t1": [0, 1, 2], "t0": [3, 4, 5], "diff": [6, 7, 8]}
    row = _manifest(phantom_export).iloc[0]
    image = tifffile.imread(phantom_export / "images" / row["split"] / f"{row['stem']}.tif")
    assert image.shape == (9, row["height"], row["width"]) and image.dtype == np.uint8
    ok, pages = cv2.imreadmulti(str(phantom_export / "images" / row["split"] / f"{row['stem']}.tif"))
    assert ok and len(pages) == 9


def test_split_by_case(phantom_export: Path) -> None:
    manifest = _manifest(phantom_export)
    assert (manifest.groupby("case")["split"].nunique() == 1).all()
    assert {"train", "val"} <= set(manifest["split"])
    for row in manifest.sample(20, random_state=0).itertuples():
        assert (phantom_export / "images" / row.split / f"{row.stem}.tif").is_file()


def test_masks_equal_resampled_consensus(phantom_export: Path, phantom_root: Path) -> None:
    manifest = _manifest(phantom_export)
    for case, rows in manifest.groupby("case"):
        geometry = CaseGeometry.load(phantom_export / "cases" / f"{case}.json")
        volume = geometry.to_export(load_mask(phantom_root / case / "ground_truth.nii.gz")[0], order=0)
        assert [list(p) for p in geometry.crop] == json.loads(rows["crop"].iloc[0])
        for row in rows.itertuples():
            png = cv2.imread(
                str(phantom_export / "masks" / row.split / f"{row.stem}.png"), cv2.IMREAD_UNCHANGED
            )
            expected = slice_image(volume, row.orientation, row.index)
            np.testing.assert_array_equal(png, expected * 255, err_msg=row.stem)
            assert row.lesion_pixels == int(expected.sum())


def test_instances_equal_components(phantom_export: Path) -> None:
    manifest = _manifest(phantom_export)
    assert manifest["instances"].sum() > 0
    for row in manifest[manifest["lesion_pixels"] > 0].itertuples():
        png = cv2.imread(str(phantom_export / "masks" / row.split / f"{row.stem}.png"), cv2.IMREAD_UNCHANGED)
        lines = (phantom_export / "labels" / row.split / f"{row.stem}.txt").read_text().splitlines()
        assert len(lines) == count_components(png) == row.instances
    empty = manifest[manifest["lesion_pixels"] == 0].iloc[0]
    assert (phantom_export / "labels" / empty["split"] / f"{empty['stem']}.txt").read_text() == ""


def test_one_pixel_lesion_gets_a_polygon() -> None:
    mask = np.zeros((6, 8), np.uint8)
    mask[2, 3] = 1
    mask[4, 6:8] = 1
    polygons = component_polygons(mask)
    assert len(polygons) == 2 and all(len(p) >= 3 for p in polygons)
    assert sorted(map(tuple, polygons[0])) == [(3, 2), (3, 3), (4, 2), (4, 3)]
    values = np.array([float(v) for line in yolo_lines(mask) for v in line.split()[1:]])
    assert values.min() >= 0 and values.max() <= 1


def test_ultralytics_reads_the_export(phantom_export: Path, no_network: None) -> None:
    from ultralytics.data.dataset import YOLODataset

    data = {"channels": 9, "names": {0: "new_lesion"}, "nc": 1}
    dataset = YOLODataset(
        img_path=str(phantom_export / "images" / "val"),
        imgsz=128,
        cache=False,
        augment=False,
        data=data,
        task="segment",
        batch_size=4,
    )
    manifest = _manifest(phantom_export).set_index("stem")
    lesion_items = [i for i, f in enumerate(dataset.im_files) if manifest.loc[Path(f).stem, "instances"] > 0]
    assert lesion_items, "the validation cases hold lesions"
    for i in [0, *lesion_items[:5]]:
        item = dataset[i]
        assert item["img"].shape[0] == 9
        assert len(item["cls"]) == manifest.loc[Path(item["im_file"]).stem, "instances"]


def test_rerun_skips_finished_cases(phantom_export: Path, phantom_root: Path) -> None:
    json_file = next((phantom_export / "cases").glob("*.json"))
    before = json_file.stat().st_mtime_ns
    summary = export_dataset(
        ExportOptions(
            dataset="phantom", root=phantom_root, out=phantom_export, spacing=SPACING, val_fraction=0.5
        )
    )
    assert summary.skipped == summary.cases == 4 and summary.slices == len(_manifest(phantom_export))
    assert json_file.stat().st_mtime_ns == before


def test_drop_empty_training_slices(phantom_root: Path, tmp_path: Path) -> None:
    common = dict(
        dataset="phantom", root=phantom_root, spacing=4.0, orientations=("axial",), val_fraction=0.5
    )
    full = export_dataset(ExportOptions(out=tmp_path / "full", **common))
    thin = export_dataset(ExportOptions(out=tmp_path / "thin", drop_empty_fraction=1.0, **common))
    a, b = _manifest(tmp_path / "full"), _manifest(tmp_path / "thin")
    assert thin.lesion_slices == full.lesion_slices
    assert (b[b["split"] == "train"]["lesion_pixels"] > 0).all()
    assert len(b[b["split"] == "val"]) == len(a[a["split"] == "val"])


def _one_case_root(phantom_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(phantom_root / "case001", root / "case001")
    return root


def _break(path: Path, change: str) -> None:
    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    affine = img.affine.copy()
    if change == "nan":
        data[0, 0, 0] = np.nan
    elif change == "constant":
        data[:] = 7.0
    elif change == "non-binary":
        data[data > 0] = 2.0
        data[0, 0, 0] = 2.0
    elif change == "grid":
        affine[0, 3] += 5.0
    nib.save(nib.Nifti1Image(data, affine), str(path))


@pytest.mark.parametrize(
    ("file", "change", "words"),
    [
        ("ground_truth.nii.gz", "non-binary", "not binary"),
        ("ground_truth.nii.gz", "grid", "affine differs"),
        ("flair_time02_on_middle_space.nii.gz", "nan", "NaN"),
        ("flair_time01_on_middle_space.nii.gz", "constant", "constant"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str, change: str, words: str
) -> None:
    root = _one_case_root(phantom_root, tmp_path)
    _break(root / "case001" / file, change)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--dataset", "phantom", "--root", str(root), "--out", str(out), "--spacing", "4"])
    assert exit_info.value.code == 2
    # One error line, last; the progress bar before it is cleared on a terminal (leave=False).
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if "error: " in line]
    assert len(errors) == 1 and lines[-1].startswith("error: ")
    assert words in lines[-1] and file in lines[-1]
    assert not [p for p in out.rglob("*") if p.is_file()] if out.exists() else True


def test_thinning_keeps_lesion_free_slices_that_brighten() -> None:
    from slicer.geometry import AXIS_OF
    from slicer.prepare import prepare_case
    from slicer.writer import _change_map, _kept_slices

    rng = np.random.default_rng(0)
    grid = np.indices((40, 40, 40)).astype(np.float32)
    head = ((grid - 19.5) ** 2).sum(axis=0) < 16**2
    t0 = np.where(head, 100.0, 0.0) + rng.normal(0, 2, head.shape)
    t1 = t0 + rng.normal(0, 2, head.shape)
    t1[18:22, 18:22, 12:15] += 80.0  # an enlarging lesion: bright at t1 only, not a new lesion
    img = nib.Nifti1Image(t1.astype(np.float32), np.eye(4))
    prepared = prepare_case(t1, img, t0, img, np.zeros(head.shape, np.uint8), register="none")
    axis = AXIS_OF["axial"]
    others = tuple(a for a in range(3) if a != axis)
    brightening = (prepared.normalised["t1n"] - prepared.normalised["t0n"]).sum(axis=others)
    hardest = int(np.argmax(brightening))
    n_slices = prepared.geometry.shape[axis]
    kept, _ = _kept_slices(prepared, "axial", 0.9, np.random.default_rng(0), _change_map(prepared))
    assert len(kept) == n_slices - round(0.9 * n_slices) and hardest in kept
    assert np.all(np.abs(kept - hardest) <= 3)  # the lesion's slices, not quiet ones


def test_source_volume_read_back_from_any_planes(phantom_export: Path) -> None:
    """A source channel stacked back from the slices is the same volume whichever planes are read."""
    manifest = pd.read_csv(phantom_export / "manifest.csv")
    case = manifest["case"].iloc[0]
    rows = manifest[manifest["case"] == case]
    geometry = CaseGeometry.load(phantom_export / "cases" / f"{case}.json")
    t0 = source_channel(geometry.extra["recipe"], int(geometry.extra["context"]), "t0")
    assert t0 == 4 and source_channel(["t1"], 1, "t0") is None
    whole = read_source_volume(phantom_export, rows, geometry.shape, t0)
    assert whole.any()
    axial = rows[rows["orientation"] == "axial"]
    thinned = pd.concat([axial.iloc[::2], rows[rows["orientation"] == "coronal"]])  # half the axial slices
    np.testing.assert_array_equal(read_source_volume(phantom_export, thinned, geometry.shape, t0), whole)
    sagittal = rows[rows["orientation"] == "sagittal"]
    np.testing.assert_array_equal(read_source_volume(phantom_export, sagittal, geometry.shape, t0), whole)


def test_split_test_then_reassemble_test(phantom_root: Path, tmp_path: Path) -> None:
    """A held-out release: every case in split ``test``, reassembled by split."""
    from fusion.reassemble import ReassembleOptions, reassemble

    out = tmp_path / "export"
    command = ["export", "--dataset", "phantom", "--root", str(phantom_root), "--out", str(out)]
    main([*command, "--spacing", "2", "--split", "test", "--orientations", "axial", "--brain-mask", "none"])
    manifest = pd.read_csv(out / "manifest.csv", dtype={"case": str})
    assert set(manifest["split"]) == {"test"} and manifest["case"].nunique() == 4
    assert yaml.safe_load((out / "phantom_long.yaml").read_text())["test"] == "images/test"
    written = reassemble(
        ReassembleOptions(
            slices=out,
            preds=[out / "masks" / "test"],
            out=tmp_path / "seg",
            split="test",
            orientations=("axial",),
        )
    )
    assert len(written) == 4 and all(path.is_file() for path in written)
