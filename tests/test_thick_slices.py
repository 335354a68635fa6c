"""Scans finer or thicker than the export grid: anti-aliased export, probability-first return."""

from __future__ import annotations

import numpy as np

from fusion.metrics import dice
from fusion.reassemble import to_scan_grid
from fusion.views import fuse_case
from slicer.geometry import CaseGeometry

# A 2D FLAIR: 0.5 mm in plane, 3 mm slices.
THICK_AFFINE = np.diag([0.5, 0.5, 3.0, 1.0])
SHAPE = (64, 64, 12)


def _ball(
    shape: tuple[int, int, int], affine: np.ndarray, centre_mm: np.ndarray, radius_mm: float
) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    return (np.linalg.norm(world - centre_mm, axis=-1) <= radius_mm).astype(np.uint8)


def test_export_low_passes_what_it_samples_more_coarsely() -> None:
    geometry = CaseGeometry.from_affine(SHAPE, THICK_AFFINE, spacing=1.0)
    stripes = np.zeros(SHAPE, np.float32)
    stripes[::2] = 1.0  # a 1 mm period along x: every 1 mm sample would fall on a stripe
    exported = geometry.to_export(stripes, order=1)
    # Sampled unfiltered, every export voxel would read 1.0 (aliasing); the Gaussian of
    # (2 - 1) / 2 voxels keeps about 0.79 of it, as scikit-image's resize would.
    interior = exported[1:-1]  # the first voxel also averages the border (mode "nearest")
    assert float(interior.max()) < 0.85 and float(interior.min()) > 0.7
    # Along the thick axis the export samples more finely: nothing is filtered there.
    layers = np.zeros(SHAPE, np.float32)
    layers[..., 6:] = 1.0
    profile = geometry.to_export(layers, order=1)[10, 10]
    assert profile.min() == 0.0 and profile.max() == 1.0
    # Masks are never filtered.
    assert set(np.unique(geometry.to_export(stripes.astype(np.uint8), order=0))) <= {0, 1}


def test_probability_is_resampled_before_it_is_thresholded() -> None:
    geometry = CaseGeometry.from_affine(SHAPE, THICK_AFFINE, spacing=1.0)
    assert not geometry.is_exactly_invertible
    truth = _ball(SHAPE, THICK_AFFINE, np.array([16.0, 16.0, 18.0]), 5.0)
    soft = geometry.to_export(truth.astype(np.float32), order=1)  # what a good model would say
    mask, prob = to_scan_grid(
        geometry, *fuse_case([soft] * 3, min_size_mm3=0, spacing=geometry.spacing), 0.5, 0
    )
    assert mask.shape == prob.shape == SHAPE
    blocks = geometry.to_original((soft > 0.5).astype(np.uint8), order=0)  # nearest-neighbour blocks
    assert dice(truth, mask) > 0.9 and dice(truth, mask) > dice(truth, blocks)
    # The resampled mask holds no lesion the fusion dropped: a lone small blob stays out.
    speck = np.zeros(geometry.shape, np.float32)
    speck[26, 26, 6] = 1.0
    fused = fuse_case([soft + speck] * 3, min_size_mm3=3.0, spacing=geometry.spacing)
    mask, _ = to_scan_grid(geometry, *fused, 0.5, 3.0)
    assert (
        dice(truth, mask) > 0.9
        and not mask[geometry.to_original((speck > 0).astype(np.uint8), order=0) > 0].any()
    )
