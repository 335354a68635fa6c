"""Intensity normalisation inside the head: head mask, robust rescaling, intensity matching.

FLAIR intensities have no absolute scale, so each scan is rescaled from its own robust
range inside the head (1st to 99th percentile) to [0, 1]. Optional histogram matching maps
the baseline's histogram onto the follow-up's, and local matching then removes the slowly
varying ratio between the two (different bias fields, coil loading), so that their
difference shows focal change rather than scanner or protocol drift.

>>> import numpy as np
>>> volume = np.zeros((20, 20, 20), np.float32); volume[4:16, 4:16, 4:16] = 100.0
>>> volume[8, 8, 8] = 300.0
>>> head = head_mask(volume)
>>> int(head.sum())
1728
>>> float(robust_rescale(volume, head)[8, 8, 8])
1.0
"""

from __future__ import annotations

import cc3d
import numpy as np
from scipy import ndimage
from skimage.exposure import match_histograms
from skimage.filters import threshold_otsu

__all__ = [
    "head_mask",
    "robust_rescale",
    "match_to_reference",
    "match_local_intensity",
    "brightening_z",
    "robust_zscore",
]

# Percentiles of head voxels mapped to 0 and 1: robust to a few hot or dark voxels.
LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.0


def head_mask(volume: np.ndarray) -> np.ndarray:
    """Boolean mask of the head: Otsu threshold, largest component, holes filled.

    Otsu separates air from tissue on FLAIR; the largest 26-connected component drops
    noise blobs and the hole filling brings back dark CSF and ventricles.
    """
    foreground = volume > threshold_otsu(volume)
    largest = cc3d.largest_k(np.ascontiguousarray(foreground), k=1, connectivity=26) > 0
    return ndimage.binary_fill_holes(largest)


def robust_rescale(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Map the 1st..99th percentile of ``volume`` inside ``mask`` to [0, 1] (clipped, float32)."""
    inside = volume[mask] if mask.any() else volume.ravel()
    low, high = np.percentile(inside, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high <= low:  # nearly constant inside the head: fall back to the full range
        low, high = float(inside.min()), float(inside.max())
    scale = 1.0 / max(float(high - low), 1e-6)
    return np.clip((volume.astype(np.float32) - np.float32(low)) * np.float32(scale), 0.0, 1.0)


def match_to_reference(volume: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``volume`` with its histogram inside ``mask`` matched to ``reference``'s; outside unchanged."""
    matched = volume.astype(np.float32, copy=True)
    if mask.any():
        matched[mask] = match_histograms(volume[mask], reference[mask])
    return matched


def _masked_smooth(volume: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian mean of ``volume`` over ``mask`` only (normalised convolution)."""
    weight = mask.astype(np.float32)
    total = ndimage.gaussian_filter(volume * weight, sigma, truncate=3.0)
    return total / np.maximum(ndimage.gaussian_filter(weight, sigma, truncate=3.0), 1e-3)


def match_local_intensity(
    volume: np.ndarray, reference: np.ndarray, mask: np.ndarray, sigma_voxels: float
) -> np.ndarray:
    """``volume`` times the smooth ratio ``G(reference) / G(volume)`` inside ``mask``, clipped to [0, 1].

    A multiplicative field smoother than ``sigma_voxels`` (bias fields differ between
    sessions and scanners) is removed, while a lesion, much smaller than the kernel, is not.
    """
    ratio = _masked_smooth(reference, mask, sigma_voxels) / np.maximum(
        _masked_smooth(volume, mask, sigma_voxels), 1e-3
    )
    return np.where(mask, np.clip(volume * ratio, 0.0, 1.0), volume).astype(np.float32)


def brightening_z(t1n: np.ndarray, t0n: np.ndarray, head: np.ndarray, sigma_voxels: float) -> np.ndarray:
    """Robust z-score of the smoothed follow-up-minus-baseline difference; 0 outside the head.

    ``(d - median(d)) / (1.4826 * MAD(d))`` over the head, with ``d`` the difference smoothed
    by a Gaussian of ``sigma_voxels``: smoothing suppresses noise and small misregistration, and
    the robust scale adapts to each case's noise and scanner pair. Focal brightening (a new or
    an enlarging lesion) stands out by several units; global drift does not.
    """
    difference = ndimage.gaussian_filter((t1n - t0n).astype(np.float32), sigma_voxels)
    return robust_zscore(difference, head)


def robust_zscore(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(v - median) / (1.4826 * MAD)`` with both statistics over ``mask``; 0 outside it."""
    mask = mask.astype(bool)
    if not mask.any():
        return np.zeros(volume.shape, np.float32)
    inside = volume[mask]
    median = float(np.median(inside))
    spread = 1.4826 * float(np.median(np.abs(inside - median))) or 1e-6
    return np.where(mask, (volume - median) / spread, 0.0).astype(np.float32)
