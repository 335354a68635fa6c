"""The classic subtraction baseline: the floor every network must beat.

After registration and intensity normalisation and matching (the slicer's job, see
:func:`slicer.prepare.prepare_case`), a new lesion is a blob much brighter at follow-up
than at baseline, and bright at follow-up. The rule, on the export grid:

1. ``z``: the robust z-score of the smoothed difference ``t1n - t0n`` inside the head
   (:func:`slicer.normalise.brightening_z`), so the threshold adapts to each case's noise
   and scanner; the sharper scan is first smoothed, axis by axis, to the other's sharpness
   (:func:`slicer.normalise.match_sharpness`: a registered baseline is interpolated, the
   follow-up is not, and the sharper scan's edges would read as brightening);
2. a lesion's core: voxels of ``z > z_threshold`` that are hyperintense at follow-up, their
   ``t1n`` above the brain's median by ``min_hyperintensity`` robust standard deviations: a
   new FLAIR lesion is brighter than the normal-appearing brain, so a brightening that stays
   darker is something else (CSF whose suppression differs between sessions, a sulcus whose
   partial volume shifts between two thick-slice acquisitions, a bias field);
3. hysteresis: the lesion is the blob of ``z > hysteresis * z_threshold`` (and ``t1n`` above
   the brain's median) around a core, so its fainter rim belongs to it and a faint blob
   without a core is dropped;
4. drop blobs of ``min_size_mm3`` or less (:func:`runtime.lesions.remove_small_lesions`).

The z threshold was chosen on phantom training cases (4 to 10, see docs/results.md), never
on real scans; a stricter threshold trades sensitivity for fewer false positives.

>>> import numpy as np
>>> t0 = np.full((32, 32, 32), 0.4, np.float32); t1 = t0.copy(); t1[10:15, 10:15, 10:15] = 0.9
>>> rng = np.random.default_rng(0); t0 += rng.normal(0, 0.01, t0.shape).astype(np.float32)
>>> int(subtraction_baseline(t1, t0, spacing=1.0).sum()) > 30
True
>>> t1[20:25, 20:25, 20:25] += 0.005  # a faint brightening: only a lower threshold keeps it
>>> [int(subtraction_baseline(t1, t0, 1.0, z)[22, 22, 22]) for z in (BASELINE_Z, 2.0)]
[0, 1]
>>> t1[2:7, 2:7, 2:7] = 0.2; t0[2:7, 2:7, 2:7] = 0.0  # brighter, yet darker than the brain
>>> int(subtraction_baseline(t1, t0, spacing=1.0)[4, 4, 4])
0
"""

from __future__ import annotations

import cc3d
import numpy as np

from runtime.lesions import remove_small_lesions
from slicer.normalise import brightening_z, match_sharpness, robust_zscore

__all__ = [
    "BASELINE_Z",
    "HYSTERESIS",
    "MIN_HYPERINTENSITY",
    "baseline_blobs",
    "brightening_maps",
    "subtraction_baseline",
]

BASELINE_Z = 8.0  # the z-score threshold of a lesion's core (see above)
HYSTERESIS = 0.5  # a lesion extends to voxels above this share of the core's threshold
MIN_HYPERINTENSITY = 0.5  # robust standard deviations above the brain's median t1n


def brightening_maps(
    t1n: np.ndarray, t0n: np.ndarray, spacing: float, head: np.ndarray, sigma_mm: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """The baseline's two maps: the robust z-score of the smoothed brightening ``t1n - t0n``,
    the two scans brought to one sharpness first (:func:`slicer.normalise.match_sharpness`),
    and the follow-up's brightness (robust z-score of ``t1n``), both over ``head``."""
    t1_matched, t0_matched = match_sharpness(t1n, t0n, head)
    return brightening_z(t1_matched, t0_matched, head, sigma_mm / spacing), robust_zscore(t1n, head)


def subtraction_baseline(
    t1n: np.ndarray,
    t0n: np.ndarray,
    spacing: float,
    z_threshold: float = BASELINE_Z,
    sigma_mm: float = 1.5,
    min_size_mm3: float = 10.0,
    head: np.ndarray | None = None,
    hysteresis: float = HYSTERESIS,
    min_hyperintensity: float = MIN_HYPERINTENSITY,
) -> np.ndarray:
    """Binary new-lesion mask (uint8) from two normalised, co-registered volumes.

    Args:
        t1n, t0n: follow-up and baseline intensities on the same grid, normalised to [0, 1].
        spacing: isotropic voxel size in mm.
        z_threshold: robust z-score of the smoothed difference a lesion's core exceeds.
        sigma_mm: Gaussian smoothing of the difference, in mm.
        min_size_mm3: blobs of this volume or less are removed (the challenge counts lesions
            from 3 mm³; below about 10 mm³ the difference of two noisy scans is mostly noise).
        head: where lesions may be and statistics come from (the brain); default ``t1n > 0``.
        hysteresis: a lesion grows from its core to voxels of ``z > hysteresis * z_threshold``.
        min_hyperintensity: how far above the brain's median a core voxel's ``t1n`` lies, in
            robust standard deviations of ``t1n`` in the brain.
    """
    head = t1n > 0 if head is None else head.astype(bool)
    z, brightness = brightening_maps(t1n, t0n, spacing, head, sigma_mm)
    return baseline_blobs(
        z, brightness, head, spacing, z_threshold, min_size_mm3, hysteresis, min_hyperintensity
    )


def baseline_blobs(
    z: np.ndarray,
    brightness: np.ndarray,
    head: np.ndarray,
    spacing: float,
    z_threshold: float = BASELINE_Z,
    min_size_mm3: float = 10.0,
    hysteresis: float = HYSTERESIS,
    min_hyperintensity: float = MIN_HYPERINTENSITY,
) -> np.ndarray:
    """Steps 2-4 of the rule on the maps of :func:`brightening_maps` (see :func:`subtraction_baseline`)."""
    extent = (z > hysteresis * z_threshold) & (brightness > 0) & head
    cores = (z > z_threshold) & (brightness > min_hyperintensity) & extent
    labels = cc3d.connected_components(np.ascontiguousarray(extent), connectivity=26)
    mask = np.isin(labels, np.unique(labels[cores]))
    return remove_small_lesions(mask, (spacing,) * 3, min_size_mm3).astype(np.uint8)
