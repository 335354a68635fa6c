"""Brain anatomy for the phantom: the MNI ICBM152 2009 tissue maps that ship with nilearn.

The maps (T1, grey matter, white matter, brain mask; 197x233x189 at 1 mm) are read from
inside the nilearn wheel, so nothing downloads. Each phantom subject is the template seen
through a small random affine (a few degrees, +-5 % scaling), rendered on any grid.

>>> atlas = load_atlas()
>>> atlas.fractions.shape, atlas.sites.shape[1]
((3, 197, 233, 189), 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

__all__ = ["TISSUES", "Atlas", "load_atlas", "random_subject_transform", "render_tissue", "sample_sites"]

TISSUES = ("csf", "gm", "wm")
# Lesion sites are chosen on a coarser copy of the atlas: plenty of candidates, 8x less work.
SITE_STEP = 2
VENTRICLE_MIN_VOXELS = 1000  # lateral ventricles: large CSF components deep inside the brain
DEEP_MM = 18.0  # CSF this far from the brain surface is ventricular, not sulcal
PERIVENTRICULAR_MM = 10.0
PERIVENTRICULAR_WEIGHT = 3.0  # periventricular sites are this much likelier than other deep WM


@dataclass(frozen=True)
class Atlas:
    """Tissue fractions (csf, gm, wm; sum = brain mask) and candidate lesion sites.

    Attributes:
        fractions: float32 (3, X, Y, Z) partial-volume fractions in [0, 1].
        affine: voxel -> world (mm, RAS) of the template.
        sites: (N, 3) world points in white matter, away from the cortex.
        site_room_mm: (N,) how far each site is from tissue a lesion should not enter.
        site_weight: (N,) relative probability (periventricular sites weigh more).
    """

    fractions: np.ndarray
    affine: np.ndarray
    sites: np.ndarray
    site_room_mm: np.ndarray
    site_weight: np.ndarray

    @property
    def centre_mm(self) -> np.ndarray:
        """World position of the middle of the template's field of view."""
        middle = (np.array(self.fractions.shape[1:]) - 1) / 2
        return self.affine[:3, :3] @ middle + self.affine[:3, 3]


def _lesion_sites(
    wm: np.ndarray, csf: np.ndarray, brain: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, ...]:
    step = SITE_STEP
    wm, csf, brain = wm[::step, ::step, ::step], csf[::step, ::step, ::step], brain[::step, ::step, ::step]
    sampling = (step,) * 3
    depth = ndimage.distance_transform_edt(brain > 0.5, sampling=sampling)
    labels, _ = ndimage.label((csf > 0.5) & (depth > DEEP_MM))
    sizes = np.bincount(labels.ravel()) * step**3
    sizes[0] = 0
    ventricles = (sizes >= VENTRICLE_MIN_VOXELS)[labels]
    to_ventricle = ndimage.distance_transform_edt(~ventricles, sampling=sampling)
    # A lesion may fill white matter and touch a ventricle (periventricular caps), nothing else.
    room = ndimage.distance_transform_edt((wm > 0.5) | ventricles, sampling=sampling)
    candidate = (wm > 0.8) & (depth > 12.0)
    index = np.argwhere(candidate) * step
    world = index @ affine[:3, :3].T + affine[:3, 3]
    weight = np.where(to_ventricle[candidate] <= PERIVENTRICULAR_MM, PERIVENTRICULAR_WEIGHT, 1.0)
    return world, room[candidate], weight


@lru_cache(maxsize=1)
def load_atlas() -> Atlas:
    """Load (once per process) the MNI152 2009 maps from the nilearn wheel, offline."""
    from nilearn import datasets

    def read(loader: object) -> np.ndarray:
        return np.asarray(loader(resolution=1).get_fdata(), dtype=np.float32)  # type: ignore[operator]

    gm = read(datasets.load_mni152_gm_template)
    wm = read(datasets.load_mni152_wm_template)
    brain = read(datasets.load_mni152_brain_mask)
    affine = datasets.load_mni152_brain_mask(resolution=1).affine
    # The tissue maps are probabilities; inside the brain whatever is not GM or WM is CSF.
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    sites, room, weight = _lesion_sites(wm, csf, brain, affine)
    # nibabel's arrays are Fortran-ordered; C order makes each rendering's weighted sum 6x faster.
    return Atlas(np.ascontiguousarray(np.stack([csf, gm, wm])), affine, sites, room, weight)


def random_subject_transform(
    rng: np.random.Generator, centre_mm: np.ndarray, max_degrees: float = 4.0, max_scale: float = 0.05
) -> np.ndarray:
    """A 4x4 map from a subject's world (mm) to template world: rotation, scaling, shift.

    Rotation is about ``centre_mm``; scaling is per axis within ``1 +- max_scale``.
    """
    rotation = Rotation.from_euler("xyz", rng.uniform(-max_degrees, max_degrees, 3), degrees=True)
    linear = rotation.as_matrix() @ np.diag(rng.uniform(1 - max_scale, 1 + max_scale, 3))
    transform = np.eye(4)
    transform[:3, :3] = linear
    transform[:3, 3] = centre_mm - linear @ centre_mm + rng.uniform(-2.0, 2.0, 3)
    return transform


def render_tissue(
    atlas: Atlas,
    weights: np.ndarray,
    shape: tuple[int, int, int],
    grid_affine: np.ndarray,
    to_atlas_world: np.ndarray,
) -> np.ndarray:
    """Resample ``sum(weights[t] * fraction[t])`` onto a grid (trilinear, float32).

    The weighted sum is taken before resampling (both are linear), so any contrast costs
    one resampling. ``to_atlas_world`` maps the grid's world points to template world.
    """
    combined = np.tensordot(np.asarray(weights, np.float32), atlas.fractions, axes=1)
    grid_to_atlas_voxel = np.linalg.inv(atlas.affine) @ to_atlas_world @ grid_affine
    return ndimage.affine_transform(
        combined,
        grid_to_atlas_voxel[:3, :3],
        offset=grid_to_atlas_voxel[:3, 3],
        output_shape=shape,
        order=1,
        mode="constant",
        cval=0.0,
    )


def sample_sites(atlas: Atlas, rng: np.random.Generator, count: int, min_room_mm: float) -> np.ndarray:
    """``count`` random template-world sites with at least ``min_room_mm`` of white matter around.

    Falls back to the roomiest sites when none has enough room (very large lesions).
    """
    fits = atlas.site_room_mm >= min_room_mm
    if not fits.any():
        fits = atlas.site_room_mm >= atlas.site_room_mm.max()
    weight = atlas.site_weight * fits
    chosen = rng.choice(len(weight), size=count, p=weight / weight.sum())
    return atlas.sites[chosen] + rng.uniform(-1.0, 1.0, (count, 3))
