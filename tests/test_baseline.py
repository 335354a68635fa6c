"""The subtraction baseline: hyperintense cores at follow-up, grown by hysteresis."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fusion.baseline import BASELINE_Z, brightening_maps, subtraction_baseline
from slicer.normalise import brightening_z, gradient_energy, match_sharpness, robust_zscore


def _pair() -> tuple[np.ndarray, np.ndarray]:
    """Brain of 0.5 with noise; a new lesion (0.5 -> 0.9 at its centre, Gaussian profile) and CSF
    that brightens from 0.05 to 0.3, still darker than the brain."""
    rng = np.random.default_rng(0)
    t0 = np.full((40, 40, 40), 0.5, np.float32) + rng.normal(0, 0.02, (40, 40, 40)).astype(np.float32)
    t1 = np.full((40, 40, 40), 0.5, np.float32) + rng.normal(0, 0.02, (40, 40, 40)).astype(np.float32)
    grid = np.indices(t0.shape).astype(np.float32)
    lesion = np.exp(-((grid - 12.0) ** 2).sum(axis=0) / (2 * 2.0**2)).astype(np.float32)
    t1 += 0.4 * lesion
    csf = (slice(24, 32),) * 3
    t0[csf], t1[csf] = 0.05, 0.3
    return t1, t0


def test_darker_brightening_is_dropped_and_the_lesion_kept() -> None:
    t1, t0 = _pair()
    head = np.ones(t1.shape, bool)
    mask = subtraction_baseline(t1, t0, spacing=1.0, head=head).astype(bool)
    assert mask[12, 12, 12] and not mask[28, 28, 28]
    # The CSF brightens far beyond the threshold: only its darkness at follow-up rules it out.
    assert brightening_z(t1, t0, head, 1.5)[28, 28, 28] > 10 * BASELINE_Z
    brightness = robust_zscore(t1, head)
    assert not brightness[28, 28, 28] > 0 and brightness[12, 12, 12] > 0.5


def test_hysteresis_grows_the_core_into_its_rim() -> None:
    t1, t0 = _pair()
    head = np.ones(t1.shape, bool)
    z, _ = brightening_maps(t1, t0, 1.0, head)
    labels = ndimage.label(z > BASELINE_Z)[0]
    core = labels == labels[12, 12, 12]
    grown = subtraction_baseline(t1, t0, 1.0, head=head).astype(bool)
    without = subtraction_baseline(t1, t0, 1.0, head=head, hysteresis=1.0).astype(bool)
    assert grown.sum() > without.sum() >= core.sum() > 0
    assert (grown & ~without).any() and not (without & ~grown).any()
    # The rim reaches voxels between half the threshold and the threshold, no lower.
    assert z[grown & ~without].min() > BASELINE_Z / 2


def test_the_sharper_scan_is_smoothed_to_the_others_sharpness_axis_by_axis() -> None:
    rng = np.random.default_rng(1)
    follow_up = ndimage.gaussian_filter(rng.random((48, 40, 36)).astype(np.float32), 1.0)
    # The baseline interpolated between thick slices: blurred along the slice axis only.
    baseline = ndimage.gaussian_filter1d(follow_up, 1.2, axis=2)
    region = np.zeros(follow_up.shape, bool)
    region[4:-4, 4:-4, 4:-4] = True
    t1m, t0m = match_sharpness(follow_up, baseline, region)
    # The blurrier scan is left alone, or nearly: the bisection may overshoot by a hair.
    assert np.abs(t0m - baseline).max() < 0.1 * np.abs(t1m - follow_up).max()
    for axis in range(3):
        before = gradient_energy(follow_up, region, axis) / gradient_energy(baseline, region, axis)
        after = gradient_energy(t1m, region, axis) / gradient_energy(t0m, region, axis)
        assert abs(after - 1.0) < 0.03 and (axis != 2 or before > 1.5)
    # Two scans already alike are returned as they are.
    same_t1, same_t0 = match_sharpness(follow_up, follow_up.copy(), region)
    assert np.array_equal(same_t1, follow_up) and np.array_equal(same_t0, follow_up)
