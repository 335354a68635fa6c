"""Lesion-evolution simulation: a pseudo baseline for single-time-point data (MSSEG-1).

A random subset of the consensus lesions is erased from the follow-up scan, so in the
pseudo pair (t0 = erased scan, t1 = real scan) exactly those lesions are new. Erased
voxels (the lesion and a one-voxel rim of partial volume) are filled with the
surrounding normal-appearing white matter: its local median plus residuals resampled
from that surrounding shell, so the fill has the neighbourhood's texture and noise.
Optionally other lesions shrink by one voxel (they then grow between t0 and t1: not new),
and the whole baseline drifts in intensity by a smooth multiplicative field.

As in TorchIO, the random draws (:func:`draw_evolution`) are apart from the deterministic
work (:func:`apply_evolution`).

>>> t0, new = simulate_evolution(t1, consensus, spacing=(1, 1, 1), seed=0)  # doctest: +SKIP
>>> bool(((new > 0) <= (consensus > 0)).all())  # doctest: +SKIP
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from slicer.lesions import label_lesions

__all__ = ["Evolution", "draw_evolution", "apply_evolution", "simulate_evolution"]

# Shell of surrounding tissue sampled for the fill: voxels 2..SHELL away from the lesion.
SHELL_VOXELS = 4


@dataclass(frozen=True)
class Evolution:
    """The random choices of one simulation.

    Attributes:
        removed: lesion labels (of :func:`slicer.lesions.label_lesions`) erased from t0.
        shrunk: lesion labels eroded by one voxel in t0.
        drift: multiplicative intensity drift of t0 at the corners of the volume (2x2x2).
        seed: seed of the fill texture.
    """

    removed: tuple[int, ...]
    shrunk: tuple[int, ...]
    drift: tuple[float, ...]
    seed: int

    def to_dict(self) -> dict[str, object]:
        return {
            "removed": list(self.removed),
            "shrunk": list(self.shrunk),
            "drift": list(self.drift),
            "seed": self.seed,
        }


def draw_evolution(
    n_lesions: int,
    rng: np.random.Generator,
    new_fraction: float = 0.5,
    shrink_fraction: float = 0.0,
    drift: float = 0.0,
) -> Evolution:
    """Choose which lesions become new (at least one when there are any) and which shrink."""
    labels = rng.permutation(np.arange(1, n_lesions + 1))
    n_new = min(n_lesions, max(1, round(new_fraction * n_lesions))) if n_lesions else 0
    rest = labels[n_new:]
    shrunk = rest[rng.random(len(rest)) < shrink_fraction]
    corners = 1.0 + rng.uniform(-drift, drift, 8)
    return Evolution(
        removed=tuple(sorted(int(v) for v in labels[:n_new])),
        shrunk=tuple(sorted(int(v) for v in shrunk)),
        drift=tuple(float(v) for v in corners),
        seed=int(rng.integers(2**31)),
    )


def _fill(volume: np.ndarray, region: np.ndarray, lesions: np.ndarray, rng: np.random.Generator) -> None:
    """Replace ``region`` in place with the local normal tissue around it (median + texture)."""
    labels, _ = ndimage.label(region)
    for box_index, box in enumerate(ndimage.find_objects(labels), start=1):
        grown = tuple(slice(max(s.start - SHELL_VOXELS, 0), s.stop + SHELL_VOXELS) for s in box)
        part = labels[grown] == box_index
        near = ndimage.binary_dilation(part, iterations=1)
        shell = ndimage.binary_dilation(part, iterations=SHELL_VOXELS) & ~near & ~lesions[grown]
        values = volume[grown][shell]
        if values.size < 8:  # no tissue around (lesion at the edge of the volume): leave it
            continue
        median = np.median(values)
        texture = rng.choice(values - median, size=int(part.sum()))
        view = volume[grown]
        view[part] = median + texture


def apply_evolution(
    t1: np.ndarray, lesion_labels: np.ndarray, evolution: Evolution
) -> tuple[np.ndarray, np.ndarray]:
    """The pseudo baseline and the new-lesion mask (uint8, exactly the removed lesions)."""
    rng = np.random.default_rng(evolution.seed)
    lesions = lesion_labels > 0
    new = np.isin(lesion_labels, evolution.removed)
    t0 = t1.astype(np.float32, copy=True)
    # The rim catches the partial-volume voxels around the lesion, which would leave a ring.
    _fill(t0, ndimage.binary_dilation(new, iterations=1) & ~(lesions & ~new), lesions, rng)
    if evolution.shrunk:
        shrinking = np.isin(lesion_labels, evolution.shrunk)
        _fill(t0, shrinking & ~ndimage.binary_erosion(shrinking), lesions, rng)
    if any(d != 1.0 for d in evolution.drift):
        corners = np.asarray(evolution.drift, dtype=np.float32).reshape(2, 2, 2)
        zoom = [n / 2 for n in t0.shape]
        field = ndimage.zoom(corners, zoom, order=1, mode="nearest", grid_mode=True)
        t0 *= field[: t0.shape[0], : t0.shape[1], : t0.shape[2]]
    return t0, new.astype(np.uint8)


def simulate_evolution(
    t1: np.ndarray,
    consensus: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    *,
    new_fraction: float = 0.5,
    shrink_fraction: float = 0.0,
    drift: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, Evolution]:
    """Turn one scan and its lesion mask into a (pseudo t0, new-lesion mask) pair.

    Args:
        t1: the real scan (becomes the follow-up).
        consensus: its lesion mask (0/1); lesions follow :func:`slicer.lesions.label_lesions`.
        spacing: voxel sizes in mm (for the lesion size rule).
        seed: all random choices derive from it.
        new_fraction: share of lesions erased from t0 (at least one when there are any).
        shrink_fraction: share of the other lesions eroded by one voxel in t0.
        drift: maximum relative intensity drift of t0 (0.05 = up to 5 % at the corners).

    Returns:
        pseudo t0 (float32), new-lesion mask (uint8, exactly the erased lesions), the draws.
    """
    lesion_labels, n_lesions = label_lesions(consensus, spacing)
    evolution = draw_evolution(n_lesions, np.random.default_rng(seed), new_fraction, shrink_fraction, drift)
    t0, new = apply_evolution(t1, lesion_labels, evolution)
    return t0, new, evolution
