"""Lesion-evolution simulation: a single time point becomes a pair whose new lesions were erased."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from slicer.evolution import simulate_evolution
from slicer.export import ExportOptions, export_dataset
from slicer.geometry import CaseGeometry, slice_image
from slicer.io import load_mask, load_volume, spacing_of
from slicer.lesions import label_lesions


def _case(phantom_root: Path, case: str = "case000") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t1, img = load_volume(phantom_root / case / "flair_time02_on_middle_space.nii.gz")
    # Every lesion of t1 (old and new) is a candidate: the union of all raters' masks.
    raters = [load_mask(p)[0] for p in sorted((phantom_root / case).glob("ground_truth_expert*.nii.gz"))]
    return t1, np.max(raters, axis=0), spacing_of(img.affine)


def test_new_mask_is_exactly_the_removed_lesions(phantom_root: Path) -> None:
    t1, lesions, spacing = _case(phantom_root)
    t0, new, evolution = simulate_evolution(t1, lesions, spacing, seed=3)
    labels, count = label_lesions(lesions, spacing)
    assert count >= 2 and 1 <= len(evolution.removed) < count
    np.testing.assert_array_equal(new, np.isin(labels, evolution.removed).astype(np.uint8))
    # Erased lesions now look like their surroundings; the rest of the scan is untouched.
    from scipy import ndimage

    touched = ndimage.binary_dilation(new > 0, iterations=1)
    np.testing.assert_array_equal(t0[~touched], t1[~touched])
    assert np.median(t0[new > 0]) < np.median(t1[new > 0])
    again = simulate_evolution(t1, lesions, spacing, seed=3)
    np.testing.assert_array_equal(again[0], t0)


def test_drift_and_shrink_change_only_t0(phantom_root: Path) -> None:
    t1, lesions, spacing = _case(phantom_root)
    t0, new, evolution = simulate_evolution(t1, lesions, spacing, seed=1, shrink_fraction=1.0, drift=0.05)
    labels, _ = label_lesions(lesions, spacing)
    np.testing.assert_array_equal(new, np.isin(labels, evolution.removed).astype(np.uint8))
    assert evolution.shrunk and not set(evolution.shrunk) & set(evolution.removed)
    assert 0.94 < float(np.median(t0 / np.maximum(t1, 1e-3))) < 1.06


def test_export_simulates_single_time_point_data(phantom_root: Path, tmp_path: Path) -> None:
    registry = tmp_path / "datasets.yaml"
    entry = {"t1": "{case}/flair_time02_on_middle_space.nii.gz", "consensus": "{case}/ground_truth.nii.gz"}
    registry.write_text(yaml.safe_dump({"datasets": {"single": {"root": str(phantom_root), **entry}}}))
    out = tmp_path / "out"
    options = dict(dataset="single", registry=registry, out=out, spacing=4.0, orientations=("axial",))
    summary = export_dataset(ExportOptions(simulate_evolution=True, **options))
    assert summary.cases == 4 and summary.lesion_slices > 0
    manifest = pd.read_csv(out / "manifest.csv")
    for case, rows in manifest.groupby("case"):
        geometry = CaseGeometry.load(out / "cases" / f"{case}.json")
        consensus, img = load_mask(phantom_root / case / "ground_truth.nii.gz")
        labels, _ = label_lesions(consensus, spacing_of(img.affine))
        removed = json.loads((out / "cases" / f"{case}.json").read_text())["extra"]["evolution"]["removed"]
        expected = geometry.to_export(np.isin(labels, removed).astype(np.uint8), order=0)
        for row in rows.itertuples():
            png = cv2.imread(str(out / "masks" / row.split / f"{row.stem}.png"), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(png, slice_image(expected, "axial", row.index) * 255)
