"""The classic subtraction baseline: the floor every network must beat.

After registration and intensity normalisation and matching (the slicer's job, see
:func:`slicer.prepare.prepare_case`), a new lesion is a blob much brighter at follow-up
than at baseline. The rule, on the export grid:

1. ``z``: the robust z-score of the smoothed difference ``t1n - t0n`` inside the head
   (:func:`slicer.normalise.brightening_z`), so the threshold adapts to each case's noise
   and scanner;
2. keep voxels with ``z > z_threshold``;
3. drop blobs of ``min_size_mm3`` or less (:func:`slicer.lesions.remove_small_lesions`).

The defaults were chosen on phantom training cases (z 4 to 8, sigma 1 to 2 mm, minimum
size 3 to 20 mm³); a stricter threshold trades sensitivity for fewer false positives.

>>> import numpy as np
>>> t0 = np.full((32, 32, 32), 0.4, np.float32); t1 = t0.copy(); t1[10:15, 10:15, 10:15] = 0.9
>>> rng = np.random.default_rng(0); t0 += rng.normal(0, 0.01, t0.shape).astype(np.float32)
>>> int(subtraction_baseline(t1, t0, spacing=1.0).sum()) > 30
True
>>> t1[20:25, 20:25, 20:25] += 0.01  # a faint brightening: only a lower threshold keeps it
>>> [int(subtraction_baseline(t1, t0, 1.0, z)[22, 22, 22]) for z in (BASELINE_Z, 4.0)]
[0, 1]
"""

from __future__ import annotations

import numpy as np

from slicer.lesions import remove_small_lesions
from slicer.normalise import brightening_z

__all__ = ["BASELINE_Z", "subtraction_baseline"]

BASELINE_Z = 8.0  # the z-score threshold, chosen on phantom training cases (see above)


def subtraction_baseline(
    t1n: np.ndarray,
    t0n: np.ndarray,
    spacing: float,
    z_threshold: float = BASELINE_Z,
    sigma_mm: float = 1.5,
    min_size_mm3: float = 10.0,
    head: np.ndarray | None = None,
) -> np.ndarray:
    """Binary new-lesion mask (uint8) from two normalised, co-registered volumes.

    Args:
        t1n, t0n: follow-up and baseline intensities on the same grid, normalised to [0, 1].
        spacing: isotropic voxel size in mm.
        z_threshold: robust z-score of the smoothed difference a new-lesion voxel exceeds.
        sigma_mm: Gaussian smoothing of the difference, in mm.
        min_size_mm3: blobs of this volume or less are removed (the challenge counts lesions
            from 3 mm³; below about 10 mm³ the difference of two noisy scans is mostly noise).
        head: voxels to take statistics from; default ``t1n > 0``.
    """
    head = t1n > 0 if head is None else head.astype(bool)
    mask = (brightening_z(t1n, t0n, head, sigma_mm / spacing) > z_threshold) & head
    return remove_small_lesions(mask, (spacing,) * 3, min_size_mm3).astype(np.uint8)
