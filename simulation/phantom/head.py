"""A head around the template brain for the realistic phantom: CSF, skull, scalp, neck, eyes.

The MNI152 template is skull-stripped; clinical FLAIR is not. The head is built once per
process from the template's brain mask, in template millimetres, as two smooth distance
fields on a coarse grid: ``skull_mm``, the distance outside the brain's closed envelope
(the skull starts a CSF rim beyond it; the envelope includes a spinal canal below the
medulla, CSF without a cord, so the layers also wrap it like vertebrae), and ``skin_mm``,
the depth below the skin of head, neck and face. A case resamples both fields through its own subject
transform and turns them into tissue fractions with one-voxel partial-volume ramps, so the
layers stay sharp at any voxel size. The eyes (vitreous, dark in FLAIR) and the orbital fat
behind them (bright) are ellipsoids at the template's orbits, computed exactly in the small
box around them.

>>> shape, affine = (60, 60, 52), np.diag([4.0, 4.0, 4.0, 1.0])  # the realistic field of view at 4 mm
>>> affine[:3, 3] = np.asarray(FOV_CENTRE_MM) - 4.0 * (np.array(shape) - 1) / 2
>>> fields = place_head(load_head_model(), shape, affine, to_atlas_world=np.eye(4))
>>> layers = draw_head_layers(np.random.default_rng(0))
>>> fat = head_signal(fields, np.zeros(shape, np.float32), layers, one_hot("fat"), voxel_mm=4.0)
>>> float(fat.max()), float(fat[30, 30, 26])  # scalp fat somewhere, none at the centre of the head
(1.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from simulation.phantom.anatomy import load_atlas, render_tissue
from simulation.phantom.scanners import ScannerProfile

__all__ = [
    "FOV_MM",
    "FOV_CENTRE_MM",
    "HEAD_TISSUES",
    "HeadLayers",
    "HeadModel",
    "HeadFields",
    "load_head_model",
    "draw_head_layers",
    "draw_head_levels",
    "one_hot",
    "place_head",
    "head_signal",
]

# An axial clinical field of view in template world (mm): 240 mm across, from just above
# the vertex down to the upper neck.
FOV_MM = (240.0, 240.0, 208.0)
FOV_CENTRE_MM = (0.0, -20.0, 4.0)
MODEL_STEP_MM = 3.0  # the distance fields are smooth: a coarse grid is exact enough and fast
MODEL_MARGIN_MM = 24.0  # beyond the field of view, room for the subject transform
CLOSING_SIGMA_MM = 4.0  # the envelope bridges sulci and fissures narrower than about this
CLOSING_LEVEL = 0.3
CANAL_XY_MM, CANAL_RADIUS_MM, CANAL_TOP_MM = (0.0, -45.0), 8.0, -60.0  # below the medulla
NECK_XY_MM, NECK_RADII_MM, NECK_TOP_MM = (0.0, -35.0), (60.0, 65.0), -40.0
FACE_CENTRE_MM, FACE_RADII_MM = (0.0, 35.0, -62.0), (48.0, 45.0, 36.0)
SCALP_MM = 17.0  # the skin lies this far outside the brain's envelope
SKIN_MM = 1.5
# The template's orbits: a globe of 12 mm radius in front of an ellipsoid of fat.
GLOBE_CENTRES_MM = np.array([[-32.0, 58.0, -40.0], [32.0, 58.0, -40.0]])
GLOBE_RADIUS_MM = 12.0
ORBIT_CENTRES_MM = np.array([[-30.0, 50.0, -40.0], [30.0, 50.0, -40.0]])
ORBIT_RADII_MM = np.array([16.0, 20.0, 15.0])

HEAD_TISSUES = ("csf", "bone", "marrow", "fat", "skin", "muscle", "vitreous")
# FLAIR signal in ScannerProfile units (white matter about 0.5, lesions about 1): fat and
# fatty marrow have a short T1 and recover before the readout (bright); cortical bone gives
# no signal; the vitreous is fluid and suppressed like CSF; muscle has a short T2.
HEAD_SIGNAL = {"bone": 0.02, "marrow": 0.75, "fat": 0.85, "skin": 0.5, "muscle": 0.3, "vitreous": 0.06}
SIGNAL_JITTER = 0.15  # per scan, each head tissue within +-15 % of its typical signal
LAYER_MM = {  # per subject, uniform within these bounds
    "csf_mm": (1.5, 3.0),
    "inner_table_mm": (2.0, 3.0),
    "diploe_mm": (2.0, 4.5),
    "outer_table_mm": (2.0, 3.0),
    "fat_mm": (3.0, 6.0),
}


@dataclass(frozen=True)
class HeadLayers:
    """One subject's thicknesses (mm), from the brain's envelope outwards; fat under the skin."""

    csf_mm: float
    inner_table_mm: float
    diploe_mm: float
    outer_table_mm: float
    fat_mm: float


@dataclass(frozen=True)
class HeadModel:
    """The head's distance fields (float32, mm) on a grid in template world (``affine``)."""

    skull_mm: np.ndarray  # distance outside the brain's closed envelope (negative inside)
    skin_mm: np.ndarray  # depth below the skin (negative in the air)
    affine: np.ndarray


@dataclass(frozen=True)
class HeadFields:
    """A head model seen on one grid: both fields resampled, and signed distances (mm,
    negative inside) to the globes and the orbits in the box ``orbit_box`` around them."""

    skull_mm: np.ndarray
    skin_mm: np.ndarray
    orbit_box: tuple[slice, slice, slice]
    globe_mm: np.ndarray
    orbit_mm: np.ndarray


def _model_grid() -> tuple[tuple[int, int, int], np.ndarray]:
    extent = np.asarray(FOV_MM) + 2 * MODEL_MARGIN_MM
    shape = tuple(int(n) for n in np.ceil(extent / MODEL_STEP_MM))
    affine = np.diag([MODEL_STEP_MM] * 3 + [1.0])
    affine[:3, 3] = np.asarray(FOV_CENTRE_MM) - MODEL_STEP_MM * (np.array(shape) - 1) / 2
    return shape, affine  # type: ignore[return-value]


def _radius(coordinates: Sequence[np.ndarray], centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """Ellipsoidal radius (1 on the surface) of broadcastable coordinates."""
    return np.sqrt(sum(((c - c0) / r) ** 2 for c, c0, r in zip(coordinates, centre, radii, strict=True)))


@lru_cache(maxsize=1)
def load_head_model() -> HeadModel:
    """Build (once per process) the head's distance fields from the template brain mask."""
    shape, affine = _model_grid()
    # World coordinates of the axis-aligned grid, one broadcastable axis each.
    x, y, z = (
        (affine[a, a] * np.arange(n) + affine[a, 3]).reshape([-1 if b == a else 1 for b in range(3)])
        for a, n in enumerate(shape)
    )
    brain = render_tissue(load_atlas(), np.ones(3, np.float32), shape, affine, np.eye(4))
    canal = (_radius((x, y), CANAL_XY_MM, (CANAL_RADIUS_MM,) * 2) <= 1) & (z <= CANAL_TOP_MM)
    # A Gaussian closing: sulci, fissures and the gaps between lobes belong to the cranium.
    cranium = ndimage.gaussian_filter(np.maximum(brain, canal), CLOSING_SIGMA_MM / MODEL_STEP_MM)
    # Distances to voxel centres, less half a step: to the surface between the voxels.
    skull = ndimage.distance_transform_edt(cranium <= CLOSING_LEVEL, sampling=MODEL_STEP_MM)
    skull -= MODEL_STEP_MM / 2
    neck = (_radius((x, y), NECK_XY_MM, NECK_RADII_MM) <= 1) & (z <= NECK_TOP_MM)
    face = _radius((x, y, z), FACE_CENTRE_MM, FACE_RADII_MM) <= 1
    skin = ndimage.distance_transform_edt((skull <= SCALP_MM) | neck | face, sampling=MODEL_STEP_MM)
    skin -= MODEL_STEP_MM / 2
    return HeadModel(skull.astype(np.float32), skin.astype(np.float32), affine)


def draw_head_layers(rng: np.random.Generator) -> HeadLayers:
    """A subject's CSF rim, skull tables, diploe and scalp fat thicknesses."""
    return HeadLayers(**{name: float(rng.uniform(*bounds)) for name, bounds in LAYER_MM.items()})


def draw_head_levels(profile: ScannerProfile, rng: np.random.Generator) -> np.ndarray:
    """Signal of each of ``HEAD_TISSUES`` on one scan: CSF as the brain's, the rest jittered."""
    jitter = rng.uniform(1 - SIGNAL_JITTER, 1 + SIGNAL_JITTER, len(HEAD_TISSUES) - 1)
    return np.array(
        [profile.csf, *(HEAD_SIGNAL[t] * j for t, j in zip(HEAD_TISSUES[1:], jitter, strict=True))]
    )


def one_hot(tissue: str) -> np.ndarray:
    """Levels that make :func:`head_signal` return the fraction of one tissue."""
    return np.eye(len(HEAD_TISSUES))[HEAD_TISSUES.index(tissue)]


def _orbit_box(shape: tuple[int, int, int], voxel_to_template: np.ndarray) -> tuple[slice, slice, slice]:
    """The grid voxels around both orbits (a few voxels of margin)."""
    low = (ORBIT_CENTRES_MM - ORBIT_RADII_MM).min(axis=0) - MODEL_STEP_MM
    high = (ORBIT_CENTRES_MM + ORBIT_RADII_MM).max(axis=0) + MODEL_STEP_MM
    corners = np.array(np.meshgrid(*zip(low, high, strict=True), indexing="ij")).reshape(3, -1).T
    to_grid = np.linalg.inv(voxel_to_template)
    index = corners @ to_grid[:3, :3].T + to_grid[:3, 3]
    start = np.clip(np.floor(index.min(axis=0)).astype(int) - 1, 0, shape)
    stop = np.clip(np.ceil(index.max(axis=0)).astype(int) + 2, start, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))  # type: ignore[return-value]


def place_head(
    model: HeadModel, shape: tuple[int, int, int], affine: np.ndarray, to_atlas_world: np.ndarray
) -> HeadFields:
    """The head of a subject on a grid; ``to_atlas_world`` maps grid world to template world."""
    voxel_to_template = to_atlas_world @ affine
    to_model = np.linalg.inv(model.affine) @ voxel_to_template
    skull, skin = (
        ndimage.affine_transform(
            field, to_model[:3, :3], offset=to_model[:3, 3], output_shape=shape, order=1, mode="nearest"
        )
        for field in (model.skull_mm, model.skin_mm)
    )
    box = _orbit_box(shape, voxel_to_template)
    index = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij"), -1)
    points = index @ voxel_to_template[:3, :3].T + voxel_to_template[:3, 3]
    globe = np.min([np.linalg.norm(points - c, axis=-1) for c in GLOBE_CENTRES_MM], axis=0) - GLOBE_RADIUS_MM
    # (radius - 1) x the shortest semi-axis: a signed distance, exact enough for a one-voxel ramp.
    orbit = np.min([_radius(np.moveaxis(points, -1, 0), c, ORBIT_RADII_MM) for c in ORBIT_CENTRES_MM], axis=0)
    orbit = (orbit - 1) * ORBIT_RADII_MM.min()
    return HeadFields(skull, skin, box, globe.astype(np.float32), orbit.astype(np.float32))


def _deeper(depth: np.ndarray, level: float, voxel_mm: float) -> np.ndarray:
    """Fraction of each voxel deeper than ``level`` along a distance field (a one-voxel ramp)."""
    return np.clip((depth - np.float32(level)) / np.float32(voxel_mm) + np.float32(0.5), 0.0, 1.0)


def head_signal(
    fields: HeadFields, brain: np.ndarray, layers: HeadLayers, levels: np.ndarray, voxel_mm: float
) -> np.ndarray:
    """Clean signal of everything but the brain: ``sum(levels[t] * fraction[t])`` (float32).

    Args:
        fields: the head on the grid (:func:`place_head`).
        brain: the brain's fraction on the same grid (it takes its share of the cranium).
        layers: the subject's layer thicknesses.
        levels: signal per tissue, in the order of ``HEAD_TISSUES`` (:func:`one_hot` gives one
            tissue's fraction).
        voxel_mm: the grid's voxel size: the width of the partial-volume ramps.
    """
    edges = np.cumsum([layers.csf_mm, layers.inner_table_mm, layers.diploe_mm, layers.outer_table_mm])
    beyond_csf, beyond_inner, beyond_diploe, beyond_skull = (
        _deeper(fields.skull_mm, e, voxel_mm) for e in edges
    )
    under_air, under_skin, under_fat = (
        _deeper(fields.skin_mm, d, voxel_mm) for d in (0, SKIN_MM, SKIN_MM + layers.fat_mm)
    )
    fractions = {
        "csf": np.maximum(1 - beyond_csf - brain, 0),
        "bone": beyond_csf - beyond_inner + beyond_diploe - beyond_skull,
        "marrow": beyond_inner - beyond_diploe,
        "skin": beyond_skull * (under_air - under_skin),
        "fat": beyond_skull * (under_skin - under_fat),
        "muscle": beyond_skull * under_fat,
    }
    level = dict(zip(HEAD_TISSUES, np.asarray(levels, np.float32), strict=True))
    signal = sum(level[t] * f for t, f in fractions.items())
    # The orbits replace whatever the layers put there, outside the cranium only.
    box = fields.orbit_box
    globe = _deeper(-fields.globe_mm, 0, voxel_mm) * beyond_csf[box]
    orbit = np.maximum(_deeper(-fields.orbit_mm, 0, voxel_mm) * beyond_csf[box] - globe, 0)
    signal[box] = signal[box] * (1 - globe - orbit) + globe * level["vitreous"] + orbit * level["fat"]
    return signal.astype(np.float32)
