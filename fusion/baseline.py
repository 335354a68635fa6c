"""The classic subtraction baseline: the floor every network must beat.

After registration and intensity normalisation (the slicer's job), a new lesion is a
voxel that is much brighter at follow-up than at baseline *and* hyperintense at
follow-up. The rule, on the export grid:

1. ``d = gaussian(t1n - t0n, sigma)`` — smoothing suppresses noise and small misregistration;
2. ``z = (d - median(d)) / (1.4826 * MAD(d))`` inside the head — a robust z-score, so the
   threshold adapts to each case's noise and scanner;
3. keep voxels with ``z > z_threshold`` and ``t1n`` above the ``hyper_percentile``-th
   percentile of the head (FLAIR lesions are hyperintense);
4. drop lesions of ``min_size_mm3`` or less (:func:`slicer.lesions.remove_small_lesions`).

>>> import numpy as np
>>> t0 = np.full((32, 32, 32), 0.4, np.float32); t1 = t0.copy(); t1[10:14, 10:14, 10:14] = 0.9
>>> rng = np.random.default_rng(0); t0 += rng.normal(0, 0.01, t0.shape).astype(np.float32)
>>> int(subtraction_baseline(t1, t0, spacing=1.0).sum()) > 30
True
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from slicer.lesions import remove_small_lesions

__all__ = ["subtraction_baseline"]


def subtraction_baseline(
    t1n: np.ndarray,
    t0n: np.ndarray,
    spacing: float,
    z_threshold: float = 5.0,
    hyper_percentile: float = 90.0,
    sigma_mm: float = 1.0,
    min_size_mm3: float = 3.0,
    head: np.ndarray | None = None,
) -> np.ndarray:
    """Binary new-lesion mask (uint8) from two normalised, co-registered volumes.

    Args:
        t1n, t0n: follow-up and baseline intensities on the same grid, normalised to [0, 1].
        spacing: isotropic voxel size in mm.
        z_threshold: robust z-score of the smoothed difference a new-lesion voxel exceeds.
        hyper_percentile: a new-lesion voxel is brighter at t1 than this percentile of the head.
        sigma_mm: Gaussian smoothing of the difference, in mm.
        min_size_mm3: lesions of this volume or less are removed (challenge rule: 3 mm³).
        head: voxels to take statistics from; default ``t1n > 0``.
    """
    head = t1n > 0 if head is None else head.astype(bool)
    if not head.any():
        return np.zeros(t1n.shape, np.uint8)
    difference = ndimage.gaussian_filter((t1n - t0n).astype(np.float32), sigma_mm / spacing)
    inside = difference[head]
    median = float(np.median(inside))
    spread = 1.4826 * float(np.median(np.abs(inside - median))) or 1e-6
    hyperintense = t1n > np.percentile(t1n[head], hyper_percentile)
    candidates = (difference - median) / spread > z_threshold
    mask = candidates & hyperintense & head
    return remove_small_lesions(mask, (spacing,) * 3, min_size_mm3).astype(np.uint8)
