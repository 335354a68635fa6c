"""The subtraction baseline: hyperintense cores at follow-up, grown by hysteresis."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fusion.baseline import BASELINE_Z, subtraction_baseline
from slicer.normalise import brightening_z, robust_zscore


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
    z = brightening_z(t1, t0, head, 1.5)
    labels = ndimage.label(z > BASELINE_Z)[0]
    core = labels == labels[12, 12, 12]
    grown = subtraction_baseline(t1, t0, 1.0, head=head).astype(bool)
    without = subtraction_baseline(t1, t0, 1.0, head=head, hysteresis=1.0).astype(bool)
    assert grown.sum() > without.sum() >= core.sum() > 0
    assert (grown & ~without).any() and not (without & ~grown).any()
    # The rim reaches voxels between half the threshold and the threshold, no lower.
    assert z[grown & ~without].min() > BASELINE_Z / 2
