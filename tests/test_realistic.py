"""The realistic phantom (a head, a shorter baseline field of view, thick slices, integer
storage, ids ``013``...) through export -> train -> predict -> reassemble -> lesion-eval -> segment."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fusion.evaluate import EvaluateOptions, evaluate
from fusion.reassemble import ReassembleOptions, reassemble
from mslong.segment import segment_patient
from slicer.datasets import load_dataset
from slicer.export import ExportOptions, export_dataset
from slicer.geometry import CaseGeometry
from slicer.io import load_mask
from slicer.manifest import read_manifest
from slicer.writer import read_roi

SPACING = 2.0


def _export(root: Path, out: Path) -> Path:
    export_dataset(ExportOptions(dataset="phantom", root=root, out=out, spacing=SPACING, val_fraction=0.5))
    return out


@pytest.fixture(scope="module")
def realistic_export(realistic_phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(realistic_phantom_root, tmp_path_factory.mktemp("realistic_export"))


def _roi_in_original(export: Path, case: str) -> np.ndarray:
    geometry = CaseGeometry.load(export / "cases" / f"{case}.json")
    return geometry.to_original(read_roi(export, geometry).astype(np.uint8), order=0) > 0


def test_pipeline_on_the_realistic_phantom(
    realistic_phantom_root: Path, realistic_export: Path, tmp_path: Path
) -> None:
    from unext_long.predict import predict_folder
    from unext_long.train import TrainOptions, train

    manifest = read_manifest(realistic_export / "manifest.csv")
    assert set(manifest["case"]) == {"013", "015", "017", "019"}
    result = train(
        TrainOptions(data=realistic_export / "phantom_long.yaml", epochs=1, imgsz=64, batch=8, size="unext-s",
                     stem="siamese", max_slices=48, project=tmp_path / "runs", name="unext", workers=0, device="cpu")
    )  # fmt: skip
    weights = result.run_dir / "weights" / "best.pt"
    preds = tmp_path / "preds"
    predict_folder(weights, realistic_export / "images" / "val", preds, device="cpu")
    val = sorted(manifest.loc[manifest["split"] == "val", "case"].unique())
    written = reassemble(
        ReassembleOptions(slices=realistic_export, preds=[preds], out=tmp_path / "seg", split="val")
    )
    assert sorted(path.name for path in written) == [f"{case}.nii.gz" for case in val]
    for case in val:  # nothing outside the brain both scans acquired
        mask = np.asarray(nib.load(tmp_path / "seg" / f"{case}.nii.gz").dataobj) > 0
        assert not (mask & ~_roi_in_original(realistic_export, case)).any()
    table = evaluate(
        EvaluateOptions(pred=tmp_path / "seg", dataset="phantom", root=realistic_phantom_root, out=tmp_path / "eval",
                        cases=val, figures=False, workers=1)
    )  # fmt: skip
    assert set(table["case"].astype(str)) == set(val)
    lesions = pd.read_csv(tmp_path / "eval" / "lesions.csv", dtype={"case": str})
    assert set(lesions["case"]) <= set(val) and (tmp_path / "eval" / "summary.md").is_file()

    # The one-patient command gives the mask reassemble gave, from the raw files.
    case = next(c for c in load_dataset("phantom", root=realistic_phantom_root) if c.id == val[0])
    out = tmp_path / "segment.nii.gz"
    segment_patient(
        case.t0, case.t1, out, [weights], device="cpu", spacing=SPACING, brain_mask_file=case.brain_mask
    )
    assert np.array_equal(
        np.asarray(nib.load(out).dataobj),
        np.asarray(nib.load(tmp_path / "seg" / f"{case.id}.nii.gz").dataobj),
    )


def test_thick_slices_round_trip_exactly(thick_phantom_root: Path, tmp_path: Path) -> None:
    """2 x 2 x 4 mm voxels exported at 2 mm: not coarser than the scan, so the masks come back exactly."""
    export = _export(thick_phantom_root, tmp_path / "export")
    preds = tmp_path / "preds"
    preds.mkdir()
    for png in export.glob("masks/*/*.png"):
        shutil.copy(png, preds)
    written = reassemble(
        ReassembleOptions(slices=export, preds=[preds], out=tmp_path / "seg", min_size_mm3=0)
    )
    assert len(written) == 2
    for path in written:
        case = path.name.removesuffix(".nii.gz")
        truth, img = load_mask(thick_phantom_root / case / "ground_truth.nii.gz")
        assert tuple(img.header.get_zooms()[:3]) == (2.0, 2.0, 4.0) and truth.any()
        expected = truth * _roi_in_original(export, case)
        np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj), expected, case)
