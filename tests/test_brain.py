"""The brain mask and the joint field of view: lesions only where both scans saw brain."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fusion.reassemble import ReassembleOptions, reassemble, to_scan_grid
from fusion.views import fuse_case
from runtime.errors import InputError
from slicer.brain import (
    SLAB_END_SLICES,
    acquired,
    brain_mask,
    check_joint_fov,
    compute_brain_mask,
    fov_interior,
    slab_axis,
    slab_interior,
)
from slicer.datasets import load_dataset
from slicer.export import ExportOptions, export_dataset
from slicer.geometry import CaseGeometry
from slicer.io import load_mask, load_volume
from slicer.manifest import read_manifest
from slicer.normalise import head_mask
from slicer.prepare import prepare_case
from slicer.writer import read_roi

SLICER = str(Path(sys.executable).with_name("slicer"))
T0_NAME = "flair_time01_on_middle_space.nii.gz"
# Share of the inferior slices the baseline does not cover in ``short_fov_root``.
MISSING_SHARE = 0.3


def _copy_case(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for path in source.iterdir():
        shutil.copy(path, target / path.name)


@pytest.fixture(scope="module")
def short_fov_root(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two phantom cases under MSSEG-2-like ids whose baseline is zero below a plane, as after
    a middle-space resampling of a scan with a shorter field of view."""
    root = tmp_path_factory.mktemp("short_fov")
    for source, name in zip(
        sorted(p for p in phantom_root.iterdir() if p.is_dir())[:2], ("013", "015"), strict=True
    ):
        _copy_case(source, root / name)
        t0 = nib.load(root / name / T0_NAME)
        data = np.asarray(t0.dataobj).copy()
        data[:, :, : int(MISSING_SHARE * data.shape[2])] = (
            0  # the phantom is RAS: axis 2 is inferior-superior
        )
        nib.save(nib.Nifti1Image(data, t0.affine, t0.header), root / name / T0_NAME)
    return root


def test_acquired_is_the_border_connected_zero_fill() -> None:
    volume = np.ones((10, 10, 10), np.float32)
    volume[:, :, :3] = 0  # zero-filled slab at the border: not acquired
    volume[5, 5, 5] = 0  # a zero voxel inside the tissue: acquired
    region = acquired(volume)
    assert not region[:, :, :3].any() and region[5, 5, 5] and int(region.sum()) == 700


def test_joint_fov_under_half_the_brain_is_refused(tmp_path: Path) -> None:
    brain = np.ones((4, 4, 4), bool)
    joint = np.zeros_like(brain)
    joint[:1] = True
    with pytest.raises(InputError, match="joint field of view covers 25% of the brain"):
        check_joint_fov(brain, joint, tmp_path / "t1.nii.gz")
    assert check_joint_fov(brain, brain, tmp_path / "t1.nii.gz") == 1.0


def test_brain_mask_modes(phantom_root: Path, tmp_path: Path) -> None:
    case = load_dataset("phantom", root=phantom_root)[0]
    t1, img = load_volume(case.t1)
    assert brain_mask("none", t1, img.affine, None, scan=case.t1) == (None, {"mode": "none"})
    with pytest.raises(InputError, match="no brain mask ships"):
        brain_mask("dataset", t1, img.affine, None, scan=case.t1)
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(t1.shape, np.uint8), img.affine), empty)
    with pytest.raises(InputError, match="brain mask is empty"):
        brain_mask("auto", t1, img.affine, empty, scan=case.t1)


def test_deepbet_runs_offline_on_the_phantom(phantom_root: Path, no_network: None) -> None:
    case = load_dataset("phantom", root=phantom_root)[0]
    t1, img = load_volume(case.t1)
    computed = compute_brain_mask(t1, img.affine)
    # The phantom is a skull-stripped brain: deepbet must return (about) the head mask.
    brain = head_mask(t1)
    assert computed.shape == t1.shape
    assert 2 * (computed & brain).sum() / (computed.sum() + brain.sum()) > 0.9


def test_missing_baseline_is_neutral_and_outside_the_roi(short_fov_root: Path) -> None:
    case = load_dataset("phantom", root=short_fov_root, check=False)[0]
    t1, t1_img = load_volume(case.t1)
    t0, t0_img = load_volume(case.t0)
    prepared = prepare_case(t1, t1_img, t0, t0_img, spacing=2.0, brain=t1 > np.percentile(t1, 40))
    missing = prepared.geometry.to_export((np.asarray(t0_img.dataobj) == 0).astype(np.uint8), order=0) > 0
    tissue = missing & prepared.head
    assert tissue.sum() > 100
    assert (prepared.volumes["diff"][tissue] == 128).all() and (prepared.volumes["t0"][tissue] == 0).all()
    assert not (prepared.roi & tissue).any()
    assert 0.5 < prepared.info["joint_fov_share"] < 1.0


def test_fov_interior_drops_the_layer_next_to_the_zero_fill_not_the_grid_border() -> None:
    joint = np.ones((6, 6, 6), bool)
    joint[:, :, :2] = False
    inner = fov_interior(joint)
    assert not inner[:, :, 2].any() and inner[:, :, 3:].all()


def test_slab_interior_drops_the_end_slices_at_the_zero_fill_and_the_grid_border() -> None:
    joint = np.ones((8, 8, 20), bool)
    joint[:, :, 16:] = False  # the baseline's field of view ends at slice 16
    kept = np.flatnonzero(slab_interior(joint, slice_axis=2).any(axis=(0, 1)))
    assert kept.min() == SLAB_END_SLICES and kept.max() == 15 - SLAB_END_SLICES
    assert slab_interior(joint, slice_axis=2)[:, :, kept].all()  # in plane nothing goes
    assert (slab_interior(joint, slice_axis=None) == joint).all()


def test_slab_axis_is_the_thick_one_and_none_for_a_3d_grid() -> None:
    assert slab_axis((0.72, 0.72, 3.0)) == 2
    assert slab_axis((4.0, 1.0, 1.0)) == 0
    assert slab_axis((1.0, 1.0, 1.2)) is None


@pytest.mark.parametrize("slice_mm", [3.0, 1.0])
def test_lesions_are_not_looked_for_in_a_thick_slabs_end_slices(slice_mm: float) -> None:
    rng = np.random.default_rng(0)
    t1 = rng.normal(100.0, 5.0, (48, 48, 24)).astype(np.float32)
    t1_img = nib.Nifti1Image(t1, np.diag([1.0, 1.0, slice_mm, 1.0]))
    prepared = prepare_case(t1, t1_img, t1.copy(), t1_img, brain=np.ones(t1.shape, bool), register="none")
    lost = np.flatnonzero((prepared.roi & ~prepared.search).any(axis=(0, 1)))  # export slices, 1 mm
    assert prepared.search.any() and not (prepared.search & ~prepared.roi).any()
    if slice_mm == 1.0:
        assert lost.size == 0
    else:  # the three 3 mm slices at each end: about 9 mm of the 1 mm export grid at both ends
        depth = prepared.roi.shape[2]
        assert set(lost) >= set(range(7)) | set(range(depth - 7, depth))
        assert 16 <= lost.size <= 20


def test_a_darker_baseline_at_its_field_of_view_edge_is_no_lesion(
    short_fov_root: Path, tmp_path: Path
) -> None:
    # A resampled scan's edge voxels mix its values with the zero fill: t0 is dimmer there.
    case = tmp_path / "013"
    _copy_case(short_fov_root / "013", case)
    t0 = nib.load(case / T0_NAME)
    data = np.asarray(t0.dataobj).copy()
    edge = int(MISSING_SHARE * data.shape[2])
    data[:, :, edge] //= 3
    nib.save(nib.Nifti1Image(data, t0.affine, t0.header), case / T0_NAME)
    t1_path = case / "flair_time02_on_middle_space.nii.gz"
    t1, t1_img = load_volume(t1_path)
    brain = t1 > np.percentile(t1, 40)
    prepared = prepare_case(
        t1, t1_img, data.astype(np.float32), t0, spacing=1.0, register="none", brain=brain
    )
    layer = np.zeros(data.shape, np.uint8)
    layer[:, :, edge] = 1
    on_edge = prepared.geometry.to_export(layer, order=0) > 0
    dimmed = on_edge & prepared.head & (prepared.volumes["diff"] > 160)
    assert dimmed.sum() > 100  # the edge reads as brightening...
    assert not (prepared.roi & on_edge).any()  # ...but lies outside the region of interest
    assert (prepared.roi & ~on_edge & prepared.head).any()


def test_export_saves_the_roi_and_fusion_respects_it(short_fov_root: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    export_dataset(
        ExportOptions(dataset="phantom", root=short_fov_root, out=export, spacing=2.0, val_fraction=0.5)
    )
    manifest = read_manifest(export / "manifest.csv")
    assert sorted(manifest["case"].unique()) == ["013", "015"]
    case = "013"
    geometry = CaseGeometry.load(export / "cases" / f"{case}.json")
    record = geometry.extra["brain_mask"]
    assert record["file"] == f"{case}_brain.nii.gz" and record["mode"] in ("dataset", "compute")
    roi = read_roi(export, geometry)
    assert roi is not None and roi.shape == geometry.shape
    # Everything predicted: the fused mask is the region of interest, nothing outside it.
    views = [np.ones(geometry.shape, np.float32)] * 3
    fused = fuse_case(views, min_size_mm3=0, spacing=geometry.spacing, roi=roi)
    mask, _ = to_scan_grid(geometry, *fused, 0.5, 0)
    assert np.array_equal(mask, geometry.to_original(roi.astype(np.uint8), order=0))
    assert mask.any() and not mask[:, :, : int(MISSING_SHARE * mask.shape[2])].any()


def test_rerun_with_zero_padded_ids_reassembles(short_fov_root: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    for _ in range(2):  # the second run reads the finished cases' manifests back
        subprocess.run(
            [SLICER, "export", "--dataset", "phantom", "--root", short_fov_root, "--out", export,
             "--spacing", "2", "--val-fraction", "0.5", "--brain-mask", "none"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    assert sorted(set(read_manifest(export / "manifest.csv")["case"])) == ["013", "015"]
    masks = export / "masks"
    preds = tmp_path / "preds"
    preds.mkdir()
    for png in masks.glob("*/*.png"):
        shutil.copy(png, preds / png.name)
    written = reassemble(
        ReassembleOptions(slices=export, preds=[preds], out=tmp_path / "seg", min_size_mm3=0)
    )
    assert sorted(p.name for p in written) == ["013.nii.gz", "015.nii.gz"]
    for path in written:
        folder = short_fov_root / path.name.split(".")[0]
        truth, _ = load_mask(folder / "ground_truth.nii.gz")
        both = acquired(load_volume(folder / T0_NAME)[0]) & acquired(
            load_volume(folder / "flair_time02_on_middle_space.nii.gz")[0]
        )
        assert np.array_equal(np.asarray(nib.load(path).dataobj), truth * both)
    assert json.loads((export / "cases" / "013.json").read_text())["extra"]["brain_mask"]["mode"] == "none"


def test_bad_brain_mask_exits_2_and_writes_nothing(short_fov_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    _copy_case(short_fov_root / "013", root / "013")
    t1 = nib.load(root / "013" / "flair_time02_on_middle_space.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(t1.shape, np.uint8), t1.affine), root / "013" / "brain.nii.gz")
    registry = tmp_path / "datasets.yaml"
    registry.write_text(
        "datasets:\n  d:\n    root: root\n    t0: '{case}/flair_time01_on_middle_space.nii.gz'\n"
        "    t1: '{case}/flair_time02_on_middle_space.nii.gz'\n    consensus: '{case}/ground_truth.nii.gz'\n"
        "    brain_mask: '{case}/brain.nii.gz'\n"
    )
    out = tmp_path / "export"
    process = subprocess.run(
        [SLICER, "export", "--dataset", "d", "--registry", registry, "--out", out, "--brain-mask", "dataset"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    # One error line, last; the progress bar before it is cleared on a terminal (leave=False).
    lines = process.stderr.strip().splitlines()
    assert process.returncode == 2 and [line for line in lines if "error: " in line] == lines[-1:]
    assert "brain.nii.gz" in lines[-1] and "empty" in lines[-1]
    assert not [p for p in out.rglob("*") if p.is_file()]
