"""Irregular lesion-like blobs defined in physical space and rasterised onto any grid.

A blob is an ellipsoid whose surface is pushed in and out by a few smooth waves. Being
defined in millimetres, a 4 mm³ lesion survives at 2 mm voxels: its partial-volume
fraction makes the voxel slightly brighter and its mask keeps at least the voxels a
lesion of that volume needs (see :func:`rasterise`).

>>> rng = np.random.default_rng(0)
>>> blob = random_blob(rng, np.zeros(3), volume_mm3=30.0)
>>> affine = np.eye(4); affine[:3, 3] = -10.0  # 1 mm grid centred on the blob
>>> patch = rasterise(blob, (20, 20, 20), affine, 1.0)
>>> 20 < int(patch.mask.sum()) < 45
True
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from runtime.lesions import MIN_LESION_MM3

__all__ = ["Blob", "Patch", "random_blob", "rasterise"]

N_WAVES = 6
WAVE_AMPLITUDE = 0.06  # each of the N_WAVES moves the surface by up to 6 % of the radius


@dataclass(frozen=True)
class Blob:
    """An ellipsoid (centre, semi-axes, rotation) with a smooth surface perturbation."""

    centre: np.ndarray  # (3,) mm
    radii: np.ndarray  # (3,) semi-axes, mm
    rotation: np.ndarray  # (3, 3) columns = the ellipsoid's axes in world space
    waves: np.ndarray  # (N_WAVES, 3) frequencies in the unit-sphere frame
    phases: np.ndarray  # (N_WAVES,)
    amplitudes: np.ndarray  # (N_WAVES,)

    @property
    def volume_mm3(self) -> float:
        return float(4 / 3 * np.pi * np.prod(self.radii))

    @property
    def extent_mm(self) -> float:
        """Radius of a sphere that surely contains the blob."""
        return float(self.radii.max() * (1 + self.amplitudes.sum()))

    def scaled(self, factor: float) -> Blob:
        """The same shape grown by ``factor`` in every direction (an enlarging lesion)."""
        return replace(self, radii=self.radii * factor)

    def depth_mm(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (mm, positive inside) to the surface along the ray from the centre."""
        offset = points - self.centre
        unit = offset @ self.rotation / self.radii  # ellipsoid -> unit sphere
        rho = np.linalg.norm(unit, axis=-1)
        bump = 1 + np.cos(unit @ self.waves.T + self.phases) @ self.amplitudes
        rho_bumped = rho / bump
        length = np.linalg.norm(offset, axis=-1)
        direction = np.where(length[:, None] > 1e-6, offset / np.maximum(length, 1e-6)[:, None], 1.0)
        ray_radius = 1.0 / np.linalg.norm(direction @ self.rotation / self.radii, axis=-1)
        return ray_radius * bump * (1 - rho_bumped)


def random_blob(rng: np.random.Generator, centre: np.ndarray, volume_mm3: float) -> Blob:
    """A random irregular blob of about ``volume_mm3`` at ``centre`` (elongation up to ~2:1)."""
    aspect = np.exp(rng.normal(0.0, 0.2, 3))
    aspect /= np.prod(aspect) ** (1 / 3)
    radius = (3 * volume_mm3 / (4 * np.pi)) ** (1 / 3)
    directions = rng.normal(size=(N_WAVES, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return Blob(
        centre=np.asarray(centre, float),
        radii=radius * aspect,
        rotation=Rotation.random(random_state=rng).as_matrix(),
        waves=directions * rng.uniform(1.5, 4.0, (N_WAVES, 1)),
        phases=rng.uniform(0, 2 * np.pi, N_WAVES),
        amplitudes=rng.uniform(0, WAVE_AMPLITUDE, N_WAVES),
    )


@dataclass(frozen=True)
class Patch:
    """A blob on a grid: where (slices), partial-volume fraction and binary mask."""

    where: tuple[slice, slice, slice]
    fraction: np.ndarray  # float32 in [0, 1]
    mask: np.ndarray  # bool, one 6-connected component


def _min_voxels(voxel_mm3: float) -> int:
    # The fewest voxels that make a lesion by the MSSEG-2 rule (strictly more than 3 mm³).
    return int(np.floor(MIN_LESION_MM3 / voxel_mm3)) + 1


def _grow_to(mask: np.ndarray, score: np.ndarray, count: int) -> np.ndarray:
    """Keep the largest component of ``mask`` (or the best voxel) and grow it to ``count`` voxels."""
    labels, n = ndimage.label(mask)
    if n:
        mask = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    else:
        mask = np.zeros_like(mask)
        mask[np.unravel_index(np.argmax(score), score.shape)] = True
    while mask.sum() < count:  # a few steps at most: only for lesions near the size limit
        ring = ndimage.binary_dilation(mask) & ~mask
        mask[np.unravel_index(np.argmax(np.where(ring, score, -np.inf)), score.shape)] = True
    return mask


def rasterise(
    blob: Blob,
    shape: tuple[int, int, int],
    grid_affine: np.ndarray,
    voxel_mm: float,
    grid_to_blob_world: np.ndarray | None = None,
) -> Patch:
    """Partial-volume fraction and mask of ``blob`` on an isotropic grid.

    Args:
        blob: the blob, in its own world (mm).
        shape, grid_affine: the grid (voxel -> world).
        voxel_mm: the grid's voxel size.
        grid_to_blob_world: 4x4 map from grid world to the blob's world (e.g. the inverse
            misalignment for t0); identity when None.
    """
    to_blob = np.eye(4) if grid_to_blob_world is None else grid_to_blob_world
    world_to_voxel = np.linalg.inv(grid_affine) @ np.linalg.inv(to_blob)
    centre = world_to_voxel[:3, :3] @ blob.centre + world_to_voxel[:3, 3]
    reach = blob.extent_mm / voxel_mm + 2
    low = np.clip(np.floor(centre - reach).astype(int), 0, np.array(shape) - 1)
    high = np.clip(np.ceil(centre + reach).astype(int) + 1, low + 1, shape)
    where = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    index = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in where], indexing="ij"), -1)
    points = index.reshape(-1, 3) @ (to_blob @ grid_affine)[:3, :3].T + (to_blob @ grid_affine)[:3, 3]
    depth = blob.depth_mm(points).reshape(index.shape[:3])
    # A linear ramp one voxel wide approximates the partial volume of the surface voxels;
    # a blob smaller than a voxel only fills that share of it.
    fraction = np.clip(0.5 + depth / voxel_mm, 0.0, 1.0) * min(1.0, blob.volume_mm3 / voxel_mm**3)
    mask = _grow_to(depth >= 0, depth, _min_voxels(voxel_mm**3))
    return Patch(where, fraction.astype(np.float32), mask)
