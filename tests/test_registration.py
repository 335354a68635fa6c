"""Registration of t0 onto t1: known misalignments recovered, aligned pairs left alone, failures listed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from slicer.export import ExportOptions, export_dataset
from slicer.io import load_volume
from slicer.normalise import head_mask
from slicer.register import register

T1 = "flair_time02_on_middle_space.nii.gz"
T0 = "flair_time01_on_middle_space.nii.gz"


def _mean_displacement(
    estimated: np.ndarray, truth: np.ndarray, mask: np.ndarray, affine: np.ndarray
) -> float:
    points = np.c_[np.argwhere(mask), np.ones(int(mask.sum()))] @ affine.T
    return float(np.linalg.norm((points @ estimated.T - points @ truth.T)[:, :3], axis=1).mean())


def test_misaligned_phantom_registered_within_1_mm(misaligned_phantom_root: Path) -> None:
    for folder in sorted(p for p in misaligned_phantom_root.iterdir() if p.is_dir()):
        t1, t1_img = load_volume(folder / T1)
        t0, t0_img = load_volume(folder / T0)
        truth = np.array(json.loads((folder / "misalignment.json").read_text())["t1_to_t0_world"])
        moved, info, _ = register(t1, t1_img, t0, t0_img, "auto")
        head = head_mask(t1)
        assert info.method == "rigid" and moved.shape == t1.shape
        assert _mean_displacement(np.eye(4), truth, head, t1_img.affine) > 2.0  # really misaligned
        assert _mean_displacement(info.t1_to_t0_world, truth, head, t1_img.affine) < 1.0, folder.name
    # Same seed, same transform (SimpleITK seeds 0 from the wall clock: ~0.1 mm apart), up to
    # the threads' summation order (1e-9).
    again = register(t1, t1_img, t0, t0_img, "auto")[1]
    np.testing.assert_allclose(again.t1_to_t0_world, info.t1_to_t0_world, atol=1e-6)


def test_aligned_pair_is_left_alone(phantom_root: Path) -> None:
    t1, t1_img = load_volume(phantom_root / "case000" / T1)
    t0, t0_img = load_volume(phantom_root / "case000" / T0)
    moved, info, _ = register(t1, t1_img, t0, t0_img, "auto")
    assert info.method == "none" and np.array_equal(moved, t0)
    np.testing.assert_array_equal(info.t1_to_t0_world, np.eye(4))


def test_failed_registration_is_listed_and_leaves_nothing(phantom_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    for case in ("case001", "case002"):
        shutil.copytree(phantom_root / case, root / case)
    noise_path = root / "case001" / T0
    img = nib.load(str(noise_path))
    noise = np.random.default_rng(0).uniform(0, 100, img.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(noise, img.affine), str(noise_path))
    out = tmp_path / "out"
    summary = export_dataset(
        ExportOptions(dataset="phantom", root=root, out=out, spacing=4.0, orientations=("axial",))
    )
    assert list(summary.failed) == ["case001"] and "did not converge" in summary.failed["case001"]
    assert summary.cases == 1 and not list(out.rglob("case001*"))
    assert set(pd.read_csv(out / "manifest.csv")["case"]) == {"case002"}
    geometry = json.loads((out / "cases" / "case002.json").read_text())
    assert geometry["extra"]["registration"]["method"] == "none"
