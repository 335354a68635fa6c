"""Simulated raters: mild, plausible disagreements around a true new-lesion mask.

Each rater is a perturbation of the truth: surface voxels left out (a conservative
rater), a shell of voxels added (a generous one), now and then a small lesion missed or
a small false lesion drawn. Every surface voxel is left out by at most one rater and
every shell voxel added by at most two, so the strict majority (3 of 4) stays close to
the truth: it only loses a surface voxel when a missed lesion and a trimmed surface
coincide.

>>> rng = np.random.default_rng(0)
>>> truth = np.zeros((12, 12, 12), bool); truth[3:9, 3:9, 3:9] = True
>>> masks = simulate_raters(truth, rng, spacing_mm=1.0)
>>> len(masks), bool((consensus(masks) == truth).all())
(4, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from runtime.lesions import label_lesions

__all__ = ["simulate_raters", "consensus", "CONSENSUS_VOTES"]

N_RATERS = 4
CONSENSUS_VOTES = 3  # MSSEG-2 style strict majority of four raters
MISS_BELOW_MM3 = 50.0  # only lesions smaller than this are ever missed ...
MISS_PROBABILITY = 0.2  # ... by one rater, this often


def _assign(rng: np.random.Generator, count: int, probabilities: np.ndarray) -> np.ndarray:
    """For each of ``count`` voxels, the one rater (or -1 for none) picked with these probabilities."""
    edges = np.cumsum(probabilities)
    picked = np.searchsorted(edges, rng.random(count), side="right")
    return np.where(picked < len(probabilities), picked, -1)


def simulate_raters(
    truth: np.ndarray,
    rng: np.random.Generator,
    spacing_mm: float | Sequence[float],
    false_lesions: Sequence[np.ndarray | None] = (),
) -> list[np.ndarray]:
    """Four uint8 rater masks around ``truth`` (a boolean new-lesion mask).

    Args:
        truth: the true new lesions.
        rng: random generator (all draws come from it, in a fixed order).
        spacing_mm: voxel size (one value, or one per axis), to tell small lesions from large ones.
        false_lesions: optional per-rater boolean masks of a false lesion to add (or None).
    """
    trim = rng.uniform(0.03, 0.2, N_RATERS)
    grow = rng.uniform(0.03, 0.2, N_RATERS)
    surface = truth & ~ndimage.binary_erosion(truth)
    shell = ndimage.binary_dilation(truth) & ~truth
    masks = [truth.copy() for _ in range(N_RATERS)]
    trimmed = _assign(rng, int(surface.sum()), trim)
    grown = [_assign(rng, int(shell.sum()), grow) for _ in range(2)]
    surface_at, shell_at = np.argwhere(surface), np.argwhere(shell)
    for rater, mask in enumerate(masks):
        mask[tuple(surface_at[trimmed == rater].T)] = False
        for picks in grown:
            mask[tuple(shell_at[picks == rater].T)] = True
    spacing = np.broadcast_to(np.asarray(spacing_mm, float), 3)
    labels, n = label_lesions(truth, spacing, min_volume_mm3=0.0)
    volumes = np.bincount(labels.ravel(), minlength=n + 1)[1:] * float(np.prod(spacing))
    for lesion in np.flatnonzero(volumes < MISS_BELOW_MM3) + 1:
        if rng.random() < MISS_PROBABILITY:
            masks[rng.integers(N_RATERS)][labels == lesion] = False
    for mask, extra in zip(masks, false_lesions, strict=False):
        if extra is not None:
            mask |= extra
    return [mask.astype(np.uint8) for mask in masks]


def consensus(masks: Sequence[np.ndarray], votes: int = CONSENSUS_VOTES) -> np.ndarray:
    """Voxels marked by at least ``votes`` raters (uint8 0/1)."""
    return (np.sum(np.asarray(masks, dtype=np.uint8), axis=0) >= votes).astype(np.uint8)
