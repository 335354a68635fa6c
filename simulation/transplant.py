"""Real lesions transplanted into a real pair: new lesions on top of real t0/t1 variation.

A real longitudinal pair carries what no simulation gives: two sessions' registration residuals,
acquisition drift, partial volume of thick 2D slices. Its few new lesions are too few to learn
from. Transplanting (CarveMix, Zhang et al. 2021; LesionMix, Basaran et al. 2023) keeps the pair
and adds real lesions to its follow-up:

- a **donor** is one lesion cut with its surroundings from a real scan and its lesion mask (a
  single-time-point consensus, or another pair's new lesions), stored as its *contrast*: the scan
  divided by the donor's own tissue level around the lesion (inpainted inwards, as the evolution
  fill does), so its texture and brightness travel relative to the tissue;
- the donor is resampled onto the target's grid through a fine grid whose slices are a whole
  fraction of the target's, then averaged into the target's slices: re-acquired at the pair's own
  slice thickness, so a small lesion is diluted by its thick slice as a real one is;
- it lands at a white-matter location of the target (inside the brain, away from its edge, on
  tissue that is neither CSF nor already hyperintense, never on a lesion of either session);
  there the follow-up becomes ``level * contrast`` blended over the donor's rim, where ``level``
  is the target's own tissue level around the site;
- every voxel outside the footprints (where the blend weight is 0) keeps its exact value, the
  baseline is not touched, and the label is the inserted lesion where half a target voxel is lesion.

As :mod:`simulation.evolution`, the random draws (:func:`draw_transplants`) are apart from the
deterministic work (:func:`apply_transplants`).

>>> rng = np.random.default_rng(0)
>>> scan = rng.normal(100, 4, (40, 40, 40)).astype(np.float32)
>>> lesion = np.zeros(scan.shape, np.uint8); lesion[18:23, 18:23, 18:23] = 1; scan[lesion > 0] *= 1.8
>>> donors = cut_donors(scan, lesion, (1.0, 1.0, 1.0), "demo")
>>> target = rng.normal(200, 8, (48, 48, 16)).astype(np.float32)  # 3 mm slices, twice as bright
>>> brain = np.zeros(target.shape, bool); brain[4:44, 4:44, 2:14] = True
>>> t1, label, footprint, placed = transplant(target, target, brain, (1.0, 1.0, 3.0), donors, count=1, seed=0)
>>> len(placed), bool(label.any()), 1.5 < float(t1[label > 0].mean()) / 200 < 1.9
(1, True, True)
>>> bool(np.array_equal(t1[~footprint], target[~footprint])), bool((label <= footprint).all())
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from runtime.lesions import MIN_LESION_MM3, label_lesions
from simulation.evolution import TEXTURE_SIGMA_VOXELS, _inpaint, _tissue_floor

__all__ = [
    "Donor",
    "Placement",
    "cut_donors",
    "tissue_sites",
    "draw_transplants",
    "apply_transplants",
    "transplant",
]

MARGIN_VOXELS = 3  # donor tissue kept around each lesion: its rim and the tissue its level comes from
RIM_VOXELS = 1.5  # the blend weight fades from 1 on the lesion to 0 this far outside it
EDGE_MM = 4.0  # sites stay this deep in the brain: juxtacortical, not on the brain's edge
LESION_CLEARANCE_MM = 3.0  # nor this close to a lesion of either session
BRIGHT_SD = 2.0  # tissue this many robust standard deviations above the brain's median is lesion-like
SITE_TISSUE_SHARE = 0.9  # of a footprint's voxels on tissue (not CSF, not lesion-like)
MAX_DONOR_MM3 = 1500.0  # larger donors are confluent plaques, not the new lesions of a follow-up
SCALE_RANGE = (0.7, 1.0)  # linear size factor a donor is drawn with
SIZE_EXPONENT = -0.5  # donors are drawn with weight volume**SIZE_EXPONENT: small lesions are most new lesions
TRIES = 40  # random sites tried per donor before it is left out


@dataclass(frozen=True)
class Donor:
    """One real lesion as contrast to its tissue, with its weight and mask, on its own grid.

    Attributes:
        contrast: donor scan / donor tissue level, over the box around the lesion.
        weight: blend weight: 1 on the lesion, fading to 0 over :data:`RIM_VOXELS` outside it.
        mask: the lesion (float 0/1, so that resampling gives partial volume).
        spacing: voxel size of the donor's grid, mm.
        source: where it was cut (scan name and lesion number), for the record.
    """

    contrast: np.ndarray
    weight: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]
    source: str

    @property
    def volume_mm3(self) -> float:
        return float(self.mask.sum() * np.prod(self.spacing))


@dataclass(frozen=True)
class Placement:
    """One drawn transplant: which donor, where (voxel of the target), how flipped and scaled."""

    donor: int
    centre: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    scale: float


def cut_donors(scan: np.ndarray, lesions: np.ndarray, spacing: Sequence[float], name: str) -> list[Donor]:
    """Every lesion of ``lesions`` (MSSEG-2 definition, up to :data:`MAX_DONOR_MM3`) as a donor."""
    spacing_mm = tuple(float(s) for s in spacing)
    labels, count = label_lesions(lesions, spacing_mm)
    any_lesion = ndimage.binary_dilation(lesions > 0)
    floor = _tissue_floor(scan)
    donors = []
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        grown = tuple(
            slice(max(s.start - MARGIN_VOXELS, 0), min(s.stop + MARGIN_VOXELS, n))
            for s, n in zip(box, scan.shape, strict=True)
        )
        lesion = labels[grown] == number
        if lesion.sum() * np.prod(spacing_mm) > MAX_DONOR_MM3:
            continue
        image = scan[grown].astype(np.float32)
        known = (image > floor) & ~any_lesion[grown]
        if not known.any():
            continue
        level = _inpaint(image, known, lesion, TEXTURE_SIGMA_VOXELS)
        outside = ndimage.distance_transform_edt(~lesion)
        weight = np.clip(RIM_VOXELS - outside, 0.0, 1.0).astype(np.float32)
        contrast = np.where(weight > 0, image / np.maximum(level, 1e-6), 1.0).astype(np.float32)
        donors.append(Donor(contrast, weight, lesion.astype(np.float32), spacing_mm, f"{name}:{number}"))
    return donors


def _thick_axis(spacing: np.ndarray) -> int:
    return int(np.argmax(spacing))


def _resampled(donor: Donor, target_spacing: np.ndarray, flips: Sequence[bool], scale: float) -> tuple:
    """The donor's (weight * contrast, weight, mask) on the target grid, re-acquired in its slices.

    The fine grid has the target's voxel in plane and a whole fraction of its slice along the
    thick axis (as fine as the donor's voxel); the mean over each target slice is the partial
    volume a thick 2D acquisition gives.
    """
    thick = _thick_axis(target_spacing)
    per_slice = max(1, round(target_spacing[thick] / min(donor.spacing)))
    fine = target_spacing.copy()
    fine[thick] /= per_slice
    zoom = np.asarray(donor.spacing) * scale / fine
    flip = tuple(axis for axis in range(3) if flips[axis])
    volumes = []
    for volume in (donor.weight * donor.contrast, donor.weight, donor.mask):
        moved = ndimage.zoom(np.flip(volume, axis=flip), zoom, order=1, grid_mode=True, mode="grid-constant")
        length = moved.shape[thick] // per_slice * per_slice
        pad = (-moved.shape[thick]) % per_slice
        if pad:  # complete the last thick slice with empty fine slices
            widths = [(0, 0)] * 3
            widths[thick] = (0, pad)
            moved = np.pad(moved, widths)
            length += per_slice
        shape = list(moved.shape)
        shape[thick : thick + 1] = [length // per_slice, per_slice]
        volumes.append(moved.reshape(shape).mean(axis=thick + 1))
    return tuple(volumes)


def tissue_sites(t1: np.ndarray, t0: np.ndarray, brain: np.ndarray, spacing: Sequence[float],
                 lesions: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Where a new lesion may land: brain tissue of both sessions, deep enough, not lesion-like.

    Tissue is above the scan's tissue floor (CSF and background below) in both sessions. Lesion-like
    is a blob (over :data:`~runtime.lesions.MIN_LESION_MM3`) of either session, smoothed over a
    voxel so that noise is not one, above :data:`BRIGHT_SD` robust standard deviations over the
    brain's median (an old lesion, or one of the pair's own new ones); it, ``lesions`` (any known
    lesion mask) and :data:`LESION_CLEARANCE_MM` around them are excluded.
    """
    spacing_mm = np.asarray(spacing, float)
    brain = brain.astype(bool)
    deep = ndimage.distance_transform_edt(brain, sampling=spacing_mm) > EDGE_MM
    tissue, bright = brain.copy(), np.zeros(brain.shape, bool)
    for scan in (t1, t0):
        smooth = ndimage.gaussian_filter(scan.astype(np.float32), 1.0)
        inside = smooth[brain]
        median = float(np.median(inside))
        spread = 1.4826 * float(np.median(np.abs(inside - median)))
        tissue &= scan > _tissue_floor(scan)
        bright |= brain & (smooth > median + BRIGHT_SD * spread)
    bright = label_lesions(bright, spacing_mm)[0] > 0
    if lesions is not None:
        bright |= lesions > 0
    clear = ndimage.distance_transform_edt(~bright, sampling=spacing_mm) > LESION_CLEARANCE_MM
    return tissue & deep & clear


def draw_transplants(
    donors: Sequence[Donor],
    sites: np.ndarray,
    spacing: Sequence[float],
    count: int,
    rng: np.random.Generator,
) -> list[Placement]:
    """Up to ``count`` placements: donors drawn towards small volumes, each at a random site where
    the lesion lies wholly on ``sites``, its rim mostly (:data:`SITE_TISSUE_SHARE`; a
    periventricular lesion's rim may touch CSF), clear of the placements before it."""
    target_spacing = np.asarray(spacing, float)
    volumes = np.array([donor.volume_mm3 for donor in donors])
    chance = volumes**SIZE_EXPONENT / np.sum(volumes**SIZE_EXPONENT)
    candidates = np.argwhere(sites)
    taken = np.zeros(sites.shape, bool)
    placements = []
    for _ in range(count * 3):
        if len(placements) == count or not len(candidates):
            break
        index = int(rng.choice(len(donors), p=chance))
        flips = tuple(bool(f) for f in rng.integers(0, 2, 3))
        scale = float(rng.uniform(*SCALE_RANGE))
        _, weight, mask = _resampled(donors[index], target_spacing, flips, scale)
        footprint, lesion = weight > 0, mask >= 0.5
        for centre in candidates[rng.integers(0, len(candidates), TRIES)]:
            box = _box(centre, weight.shape, sites.shape)
            if box is None:
                continue
            here = sites[box[0]]
            if (
                here[lesion].all()
                and here[footprint].mean() >= SITE_TISSUE_SHARE
                and not taken[box[0]][footprint].any()
            ):
                taken[box[0]] |= ndimage.binary_dilation(footprint, iterations=2)
                placements.append(Placement(index, tuple(int(c) for c in centre), flips, scale))
                break
    return placements


def _box(centre: np.ndarray, shape: Sequence[int], volume: Sequence[int]) -> tuple | None:
    """(target slices, donor slices) of a donor of ``shape`` centred at ``centre``; None if it overflows."""
    start = np.asarray(centre) - np.asarray(shape) // 2
    stop = start + np.asarray(shape)
    if (start < 0).any() or (stop > np.asarray(volume)).any():
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True)), tuple(
        slice(0, n) for n in shape
    )


def apply_transplants(
    t1: np.ndarray,
    donors: Sequence[Donor],
    placements: Sequence[Placement],
    spacing: Sequence[float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The follow-up with the placed lesions (``t1``'s dtype), their label (uint8) and footprint.

    Each footprint becomes ``level * contrast`` blended with the scan by the donor's weight, where
    ``level`` is the follow-up's tissue level inpainted into the footprint from the tissue around
    it; voxels of weight 0 (outside the boolean footprint) keep their exact values.
    """
    target_spacing = np.asarray(spacing, float)
    out = t1.astype(np.float32, copy=True)
    label = np.zeros(t1.shape, np.uint8)
    footprints = np.zeros(t1.shape, bool)
    floor = _tissue_floor(t1)
    for placement in placements:
        weighted, weight, mask = _resampled(
            donors[placement.donor], target_spacing, placement.flips, placement.scale
        )
        region, _ = _box(np.asarray(placement.centre), weight.shape, t1.shape)
        grown = tuple(slice(max(s.start - MARGIN_VOXELS, 0), min(s.stop + MARGIN_VOXELS, n))
                      for s, n in zip(region, t1.shape, strict=True))  # fmt: skip
        inner = tuple(slice(r.start - g.start, r.stop - g.start) for r, g in zip(region, grown, strict=True))
        image = out[grown]
        footprint = np.zeros(image.shape, bool)
        footprint[inner] = weight > 0
        known = (image > floor) & ~ndimage.binary_dilation(footprint)
        level = _inpaint(image, known, footprint, TEXTURE_SIGMA_VOXELS)[inner]
        view = out[region]
        view[:] = np.where(weight > 0, level * weighted + (1.0 - weight) * view, view)
        label[region] |= (mask >= 0.5).astype(np.uint8)
        footprints[region] |= weight > 0
    if np.issubdtype(t1.dtype, np.integer):
        info = np.iinfo(t1.dtype)
        changed = out != t1
        result = t1.copy()
        result[changed] = np.clip(np.rint(out[changed]), info.min, info.max).astype(t1.dtype)
        return result, label, footprints
    return out.astype(t1.dtype), label, footprints


def transplant(
    t1: np.ndarray,
    t0: np.ndarray,
    brain: np.ndarray,
    spacing: Sequence[float],
    donors: Sequence[Donor],
    count: int,
    seed: int,
    lesions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Placement]]:
    """Place up to ``count`` donors into the follow-up of one real pair.

    Args:
        t1, t0: the pair on one grid (t0 is read for its lesions, never changed).
        brain: brain mask on that grid.
        spacing: its voxel size, mm (the largest is taken as the slice thickness).
        donors: from :func:`cut_donors`.
        lesions: known lesions of the pair (e.g. its own new lesions), kept clear.

    Returns the new follow-up, the label of the inserted lesions (MSSEG-2 lesions only), the
    footprint outside which every voxel is the pair's own, and the placements.
    """
    sites = tissue_sites(t1, t0, brain, spacing, lesions)
    placements = draw_transplants(donors, sites, spacing, count, np.random.default_rng(seed))
    new_t1, label, footprint = apply_transplants(t1, donors, placements, spacing)
    label = (label_lesions(label, spacing, MIN_LESION_MM3)[0] > 0).astype(np.uint8)
    return new_t1, label, footprint, placements
