"""How the realistic phantom is acquired: thick axial slices, a shorter baseline field of
view, integer storage.

Clinical pairs are often 2D FLAIR with thick slices (the partial volume of a slice is the
mean of the fine volume over its thickness); a baseline's field of view often ends earlier
than the follow-up's, so once both are resampled into a middle space t0 is zero beyond a
plane; scanners store scaled integers.

>>> volume = np.arange(8, dtype=np.float32).reshape(1, 1, 8)
>>> thicken(volume, 4).ravel().tolist()
[1.5, 5.5]
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial.transform import Rotation

from runtime.errors import InputError
from simulation.phantom.scanners import ScannerProfile

__all__ = [
    "FieldOfViewCut",
    "slices_per_thick",
    "thicken",
    "thick_affine",
    "draw_fov_cuts",
    "field_of_view_mask",
    "integer_storage",
]

INFERIOR_CUT_MM = (10.0, 30.0)  # t0 always misses this much at the bottom of the field of view
SUPERIOR_CUT_MM = (10.0, 30.0)  # ... and sometimes this much at the top
SUPERIOR_CUT_PROBABILITY = 0.3
CUT_TILT_DEGREES = 4.0  # the other scan's slab is a little oblique in the middle space
INTEGER_DTYPES = ("uint16", "int16")
STORED_WM = (400.0, 3000.0)  # stored value of white matter


@dataclass(frozen=True)
class FieldOfViewCut:
    """t0 keeps the voxels where ``(p - point_mm) . normal >= 0`` (RAS mm); the rest is 0."""

    side: str  # "inferior" or "superior"
    depth_mm: float  # how far inside the grid's edge the plane passes, at the grid's centre
    point_mm: np.ndarray
    normal: np.ndarray

    def to_json(self) -> dict[str, object]:
        """The cut for phantom.json, at full precision: the plane gives back the same voxels."""
        return {
            "side": self.side,
            "depth_mm": self.depth_mm,
            "point_mm": self.point_mm.tolist(),
            "normal": self.normal.tolist(),
        }


def slices_per_thick(voxel_mm: float, thickness_mm: float) -> int:
    """How many fine slices of ``voxel_mm`` make one thick slice (a whole number)."""
    count = round(thickness_mm / voxel_mm)
    if count < 1 or abs(count * voxel_mm - thickness_mm) > 1e-6 * thickness_mm:
        raise InputError(
            "--slice-thickness",
            f"must be a whole multiple of --voxel ({voxel_mm:g} mm), got {thickness_mm:g}",
        )
    return count


def thicken(volume: np.ndarray, count: int) -> np.ndarray:
    """Mean of every ``count`` consecutive slices along the last (axial) axis, float32."""
    if count == 1:
        return volume
    x, y, z = volume.shape
    return volume.reshape(x, y, z // count, count).mean(axis=3, dtype=np.float32)


def thick_affine(affine: np.ndarray, count: int) -> np.ndarray:
    """The grid of :func:`thicken`: a thick voxel's centre is the mean of its fine ones."""
    thick = np.array(affine, float)
    thick[:3, 3] += affine[:3, 2] * (count - 1) / 2
    thick[:3, 2] *= count
    return thick


def _cut(
    rng: np.random.Generator, side: str, inward: np.ndarray, edge_mm: np.ndarray, bounds: tuple[float, float]
) -> FieldOfViewCut:
    depth = float(rng.uniform(*bounds))
    axis = np.cross(inward, rng.normal(size=3))  # a random direction across the slab
    tilt = Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.radians(rng.uniform(0, CUT_TILT_DEGREES)))
    return FieldOfViewCut(side, depth, edge_mm + depth * inward, tilt.apply(inward))


def draw_fov_cuts(
    rng: np.random.Generator, shape: tuple[int, int, int], affine: np.ndarray
) -> list[FieldOfViewCut]:
    """Where t0's field of view ends: always inferiorly, sometimes superiorly too.

    The grid's last axis is the axial one (RAS: towards superior).
    """
    up = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    centre = affine[:3, :3] @ (np.array(shape) - 1) / 2 + affine[:3, 3]
    half = np.linalg.norm(affine[:3, 2]) * shape[2] / 2  # centre to the grid's edge
    cuts = [_cut(rng, "inferior", up, centre - half * up, INFERIOR_CUT_MM)]
    if rng.random() < SUPERIOR_CUT_PROBABILITY:
        cuts.append(_cut(rng, "superior", -up, centre + half * up, SUPERIOR_CUT_MM))
    return cuts


def field_of_view_mask(
    shape: tuple[int, int, int], affine: np.ndarray, cuts: list[FieldOfViewCut]
) -> np.ndarray:
    """The voxels t0 still sees (boolean): on the kept side of every cut."""
    kept = np.ones(shape, bool)
    for cut in cuts:
        # (p - point) . normal is linear in the voxel index: one term per axis, broadcast.
        gain = affine[:3, :3].T @ cut.normal
        height = float((affine[:3, 3] - cut.point_mm) @ cut.normal) + sum(
            g * np.arange(n).reshape([-1 if b == a else 1 for b in range(3)])
            for a, (g, n) in enumerate(zip(gain, shape, strict=True))
        )
        kept &= height >= 0
    return kept


def integer_storage(profile: ScannerProfile, rng: np.random.Generator) -> ScannerProfile:
    """The profile storing scaled integers: uint16 or int16, white matter at a random value."""
    return replace(profile, dtype=str(rng.choice(INTEGER_DTYPES)), scale=float(rng.uniform(*STORED_WM)))
