"""Lesion-evolution simulation: a pseudo baseline for single-time-point data (MSSEG-1).

One scan and its lesion mask become a pseudo pair (t0 = simulated baseline, t1 = the real scan):

- a random share of the lesions is erased from t0: they are new, and exactly the new-lesion mask;
- a random share of the others is smaller at t0 (enlarging lesions, grown by a linear factor as in
  the phantom): MSSEG-2 counts new lesions only, so their new rim is not in the mask, a hard negative;
- t0 drifts in intensity by a smooth multiplicative field;
- with ``reacquire``, t0 becomes a second acquisition: resampled at a random sub-voxel offset (as
  into a middle space, or after a registration a fraction of a voxel off) and given noise of its
  own, so that its roughness is the scan's again. Without it, t0 would share every voxel of t1's
  noise: the difference of the pair would be exactly zero but on the lesions, a cue no real pair
  gives (two sessions never share their noise) and one a network or a z-score leans on.

Erasing replaces the lesion and its partial-volume rim by the tissue around it: a smooth level
inpainted inwards from the nearest normal tissue (background and CSF excluded, so a periventricular
lesion takes the white matter's level), plus texture (tissue minus its smooth level) copied from the
patch of tissue beside the lesion whose level and grain are closest, rescaled to the roughness of
the tissue around the lesion and clipped to its noise range. The fill thus has the scan's own grain;
a fill of independently drawn voxels would be rougher than any tissue, a speckle in the diff
channel exactly on the mask, the first cue a network would learn. Beyond the rim the fill fades
into the scan over :data:`BLEND_VOXELS`, keeping the texture's variance. A grown lesion keeps its
deepest voxels at t0, the rest of it is erased the same way.

As in TorchIO, the random draws (:func:`draw_evolution`) are apart from the deterministic
work (:func:`apply_evolution`).

>>> rng = np.random.default_rng(0)
>>> t1 = rng.normal(100, 5, (32, 32, 32)).astype(np.float32)
>>> consensus = np.zeros(t1.shape, np.uint8)
>>> consensus[8:12, 8:12, 8:12] = 1; consensus[20:24, 20:24, 20:24] = 1; t1[consensus > 0] += 80
>>> t0, new, evolution = simulate_evolution(t1, consensus, spacing=(1, 1, 1), seed=0)
>>> evolution.removed, evolution.grown, int(new.sum())  # lesion 1 is new, lesion 2 enlarges
((1,), (2,), 64)
>>> bool(((new > 0) <= (consensus > 0)).all()), 90 < float(t0[new > 0].mean()) < 110  # tissue's level
(True, True)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import fft, ndimage
from skimage.filters import threshold_otsu

from runtime.lesions import ENLARGING_GROWTH, ENLARGING_SHARE, MIN_LESION_MM3, bounding_box, label_lesions

__all__ = ["Evolution", "draw_evolution", "apply_evolution", "simulate_evolution", "erase_lesions"]

# Distances of the fill are in voxels: partial volume and noise are a voxel's, whatever its size.
RIM_VOXELS = 1.0  # partial-volume rim erased with a lesion (replaced entirely)
BLEND_VOXELS = 1.0  # beyond the rim the fill fades into the scan over this distance
CORE_EDGE_VOXELS = 1.25  # voxels next to a grown lesion's baseline core keep a fifth of it
TEXTURE_SIGMA_VOXELS = 1.5  # Gaussian scale that splits tissue into a smooth level and its texture
TRUNCATE = 3.0  # Gaussians end at 3 sigma, as in slicer.normalise
RING_VOXELS = 5  # tissue around the filled region whose roughness the fill takes
GAP_VOXELS = 1  # between the filled region and the tissue its texture is copied from
OUTLIER_SD = 3.0  # texture beyond this many robust standard deviations of the tissue is structure
DARK_FRACTION = 0.5  # below this share of the tissue's median intensity: background or CSF
# A voxel is inpainted once this share of the Gaussian's weight lies on tissue of known level.
MIN_SUPPORT = 0.05
MAX_SHIFT_VOXELS = 0.5  # a re-acquired t0 is resampled this far off t1's grid at most, per axis
# Texture is copied from the neighbouring patch in one of these 26 directions.
_DIRECTIONS = np.argwhere(np.ones((3, 3, 3), bool)) - 1
_DIRECTIONS = _DIRECTIONS[np.any(_DIRECTIONS != 0, axis=1)]


@dataclass(frozen=True)
class Evolution:
    """The random choices of one simulation.

    Attributes:
        removed: lesion labels (of :func:`runtime.lesions.label_lesions`) erased from t0: the new lesions.
        grown: lesion labels smaller at t0 (enlarging between t0 and t1; not new).
        growth: linear growth factor from t0 to t1 of each ``grown`` lesion (t0 keeps 1/growth³ of it).
        drift: multiplicative intensity drift of t0 at the corners of the volume (2x2x2).
        shift: sub-voxel offset (voxels, per axis) at which t0 is resampled as a second acquisition.
        noise_seed: seed of t0's own noise; None when t0 is not re-acquired (it shares t1's noise).
    """

    removed: tuple[int, ...]
    grown: tuple[int, ...]
    growth: tuple[float, ...]
    drift: tuple[float, ...]
    shift: tuple[float, ...] = (0.0, 0.0, 0.0)
    noise_seed: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "removed": list(self.removed),
            "grown": list(self.grown),
            "growth": list(self.growth),
            "drift": list(self.drift),
            "shift": list(self.shift),
            "noise_seed": self.noise_seed,
        }


def draw_evolution(
    volumes_mm3: np.ndarray,
    rng: np.random.Generator,
    new_fraction: float = 0.5,
    grow_fraction: float = ENLARGING_SHARE,
    drift: float = 0.0,
    reacquire: bool = False,
) -> Evolution:
    """Choose the new lesions (at least one when there are any), the enlarging ones, the drift
    and, with ``reacquire``, the offset and noise of t0's second acquisition.

    Args:
        volumes_mm3: volume of lesion ``i + 1`` at index ``i``.
        rng: source of every draw.
        new_fraction: share of lesions erased from t0.
        grow_fraction: share of the other lesions that are smaller at t0.
        drift: maximum relative intensity drift of t0 at the corners.
        reacquire: t0 is resampled at a random sub-voxel offset and gets noise of its own.
    """
    volumes_mm3 = np.asarray(volumes_mm3, dtype=float)
    n_lesions = len(volumes_mm3)
    labels = rng.permutation(np.arange(1, n_lesions + 1))
    n_new = min(n_lesions, max(1, round(new_fraction * n_lesions))) if n_lesions else 0
    kept = labels[n_new:]
    factors = rng.uniform(*ENLARGING_GROWTH, len(kept))
    # The baseline core must still be a lesion, or the lesion would be new rather than enlarging.
    grows = (rng.random(len(kept)) < grow_fraction) & (volumes_mm3[kept - 1] / factors**3 > MIN_LESION_MM3)
    order = np.argsort(kept[grows])
    corners = 1.0 + rng.uniform(-drift, drift, 8)
    evolution = Evolution(
        removed=tuple(sorted(int(v) for v in labels[:n_new])),
        grown=tuple(int(v) for v in kept[grows][order]),
        growth=tuple(round(float(v), 4) for v in factors[grows][order]),
        drift=tuple(float(v) for v in corners),
    )
    if not reacquire:  # drawn last: the choices above do not depend on it
        return evolution
    shift = tuple(float(v) for v in rng.uniform(-MAX_SHIFT_VOXELS, MAX_SHIFT_VOXELS, 3))
    return replace(evolution, shift=shift, noise_seed=int(rng.integers(2**31)))


def _growth_cores(lesions: np.ndarray, growth: dict[int, float], spacing: np.ndarray) -> np.ndarray:
    """The baseline part of each grown lesion: its deepest voxels, 1/growth³ of its volume."""
    grown = np.isin(lesions, list(growth))
    if not grown.any():
        return grown
    ids = lesions[grown]
    depth = ndimage.distance_transform_edt(grown, sampling=spacing)[grown]
    labels = np.fromiter(growth, dtype=np.int64, count=len(growth))
    factors = np.fromiter(growth.values(), dtype=float, count=len(growth))
    keep = np.zeros(int(lesions.max()) + 1)
    keep[labels] = np.ceil(np.bincount(ids, minlength=len(keep))[labels] / factors**3)
    # Rank the voxels of each lesion from the deepest; ties go by position, so the result is exact.
    order = np.lexsort((-depth, ids))
    sorted_ids = ids[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_ids, sorted_ids)
    core = np.zeros(len(ids), bool)
    core[order] = rank < keep[sorted_ids]
    cores = np.zeros_like(grown)
    cores[grown] = core
    return cores


def _erase_weight(
    lesions: np.ndarray, removed: np.ndarray, growth: dict[int, float], spacing: np.ndarray
) -> np.ndarray:
    """Share of the fill in each voxel of t0: 1 over the changing lesions and their rim, 0 far away."""
    changing = np.isin(lesions, removed) | np.isin(lesions, list(growth))
    outside = ndimage.distance_transform_edt(~changing)
    weight = np.clip((RIM_VOXELS + BLEND_VOXELS - outside) / BLEND_VOXELS, 0.0, 1.0)
    cores = _growth_cores(lesions, growth, spacing)
    if cores.any():
        from_core = ndimage.distance_transform_edt(~cores)
        weight = np.minimum(weight, np.clip(from_core / CORE_EDGE_VOXELS, 0.0, 1.0))
    # Lesions that stay are never touched (nor are the cores, through the minimum above).
    weight[(lesions > 0) & ~changing] = 0.0
    return weight


def _inpaint(image: np.ndarray, known: np.ndarray, target: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth level of the known tissue, carried ring by ring into ``target`` (normalised convolution).

    Each pass gives the voxels with enough known tissue under the Gaussian their weighted mean and
    then counts them as known, so every voxel takes the level of the tissue nearest to it, as in a
    diffusion fill, rather than one mean of a whole shell (which would mix in a nearby ventricle).
    Known voxels get their own smooth level in the first pass.
    """
    weights = known.astype(np.float32)
    values = np.where(known, image, 0.0).astype(np.float32)
    # Voxels that no pass reaches (walled in by other lesions) take the median tissue level.
    level = np.full(image.shape, np.median(image[known]), np.float32)
    todo = known | target
    while todo.any():
        support = ndimage.gaussian_filter(weights, sigma, truncate=TRUNCATE)
        ready = todo & (support > MIN_SUPPORT)
        if not ready.any():
            break
        level[ready] = ndimage.gaussian_filter(values, sigma, truncate=TRUNCATE)[ready] / support[ready]
        todo &= ~ready
        fresh = ready & ~known
        weights[fresh] = 1.0
        values[fresh] = level[fresh]
    return level


def _texture_source(
    level: np.ndarray,
    residual: np.ndarray,
    known: np.ndarray,
    target: np.ndarray,
    ring: np.ndarray,
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Where each ``target`` voxel copies its texture from: an equal patch of tissue next to the target.

    Of the 26 patches just beside the target's bounding box, those with the most known tissue (within
    5 %) compete; the one whose smooth level is closest to the target's and whose texture amplitude
    is closest to the ``ring`` of tissue around it wins, so the texture comes from the same kind of
    tissue and not from across a sulcus or a vessel. Returns the source index of each target voxel
    and whether it is tissue.
    """
    coords = np.argwhere(target)
    extent = np.ptp(coords, axis=0) + 1 + GAP_VOXELS
    sources = coords[None] + (_DIRECTIONS * extent)[:, None]
    inside = np.all((sources >= 0) & (sources < target.shape), axis=2)
    clipped = tuple(np.clip(sources, 0, np.asarray(target.shape) - 1).transpose(2, 0, 1))
    usable = inside & known[clipped]
    count = np.maximum(usable.sum(axis=1), 1)
    mismatch = (
        np.where(usable, np.abs(level[clipped] - level[tuple(coords.T)][None]), 0.0).sum(axis=1) / count
    )
    amplitude = np.where(usable, np.abs(residual[clipped]), 0.0).sum(axis=1) / count
    cost = mismatch + np.abs(amplitude - np.mean(np.abs(residual[ring])))
    coverage = usable.mean(axis=1)
    best = np.argmin(np.where(coverage >= 0.95 * coverage.max(), cost, np.inf))
    return tuple(c[best] for c in clipped), usable[best]


def _roughness_gain(
    image: np.ndarray,
    residual: np.ndarray,
    known: np.ndarray,
    ring: np.ndarray,
    source: tuple[np.ndarray, ...],
    usable: np.ndarray,
) -> float:
    """Gain that makes the fill (smooth level + copied texture) as rough as the ``ring`` around it.

    Roughness is the mean absolute Laplacian, the scale at which a fill of independent voxels stood
    out. The level is smooth, so the texture carries all of it; the patch may lie in rougher or
    smoother tissue than the target's surroundings (a large lesion's neighbour is far).
    """
    # The texture's Laplacian counts only where all six neighbours are tissue of known level.
    copied = usable & ndimage.binary_erosion(known)[source]
    if not copied.any():
        return 1.0
    around = np.mean(np.abs(ndimage.laplace(image))[ring])
    texture = np.mean(np.abs(ndimage.laplace(np.where(known, residual, 0.0)))[source][copied])
    return float(around) / max(float(texture), 1e-6)


def _texture(image: np.ndarray, level: np.ndarray, known: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Texture of each ``target`` voxel: tissue minus its level, copied, rescaled and clipped."""
    residual = image - level
    ring = known & ndimage.binary_dilation(target, iterations=RING_VOXELS)
    if not ring.any():  # the target fills its box's tissue: its own tissue is the reference
        ring = known
    source, usable = _texture_source(level, residual, known, target, ring)
    gain = _roughness_gain(image, residual, known, ring, source, usable)
    # A vessel or a sulcus in the patch would show as a structure, not as grain: the texture keeps
    # within the noise of the tissue around (robust standard deviation, blind to such outliers).
    spread = OUTLIER_SD * 1.4826 * np.median(np.abs(residual[ring] - np.median(residual[ring])))
    return np.where(usable, np.clip(gain * residual[source], -spread, spread), 0.0)


def _fill_group(
    t0: np.ndarray,
    t1: np.ndarray,
    lesion_labels: np.ndarray,
    box: tuple[slice, ...],
    tight: tuple[slice, ...],
    group: np.ndarray,
    evolution: Evolution,
    spacing: np.ndarray,
    tissue_floor: float,
) -> None:
    """Erase (or shrink) the lesions of one group of nearby changing lesions, writing into ``t0``."""
    image = t1[box].astype(np.float32)
    lesions = np.where(group, lesion_labels[box], 0)
    present = set(np.unique(lesions).tolist())
    removed = np.array([label for label in evolution.removed if label in present], dtype=lesions.dtype)
    growth = {g: f for g, f in zip(evolution.grown, evolution.growth, strict=True) if g in present}
    # The weight is 0 beyond the group (its lesions dilated past the blend): distances stay in it.
    weight = np.zeros(image.shape, np.float32)
    weight[tight] = _erase_weight(lesions[tight], removed, growth, spacing)
    # Voxels below the tissue floor (background, CSF) are neither written nor a source of level.
    tissue = image > tissue_floor
    known = tissue & ~ndimage.binary_dilation(lesion_labels[box] > 0) & (weight < 1.0)
    target = group & (weight > 0.0) & (tissue | (lesions > 0))
    if not known.any():
        warnings.warn(f"lesions {sorted(present - {0})} have no tissue around them: left in t0", stacklevel=3)
        return
    level = _inpaint(image, known, target, TEXTURE_SIGMA_VOXELS)
    texture = _texture(image, level, known, target)
    # The scan's own smooth level and texture, blended with the fill's; the textures are independent,
    # so their weights are square roots: the blend keeps the tissue's noise amplitude.
    plain = ndimage.gaussian_filter(image, TEXTURE_SIGMA_VOXELS, truncate=TRUNCATE)[target]
    share = weight[target]
    view = t0[box]
    view[target] = (
        (1.0 - share) * plain
        + share * level[target]
        + np.sqrt(1.0 - share) * (image[target] - plain)
        + np.sqrt(share) * texture
    )


def _groups(changing: np.ndarray) -> Iterator[tuple[tuple[slice, ...], tuple[slice, ...], np.ndarray]]:
    """Groups of changing lesions close enough to share a fill: box, bounds in it, mask in it.

    A group is its lesions dilated past the blend; its box also holds the patches its texture may
    come from.
    """
    reach = int(np.ceil(RIM_VOXELS + BLEND_VOXELS))
    crop = bounding_box(changing, margin=reach + 1)
    region = tuple(slice(int(a), int(b)) for a, b in crop)
    labels = np.zeros(changing.shape, np.int32)
    near = ndimage.binary_dilation(changing[region], np.ones((3, 3, 3), bool), iterations=reach)
    labels[region] = ndimage.label(near)[0]
    support = int(np.ceil(TRUNCATE * TEXTURE_SIGMA_VOXELS)) + 1
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        extent = np.array([s.stop - s.start for s in box])
        margin = extent + GAP_VOXELS + support
        grown = tuple(
            slice(max(s.start - m, 0), min(s.stop + m, n))
            for s, m, n in zip(box, margin, changing.shape, strict=True)
        )
        tight = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(box, grown, strict=True))
        yield grown, tight, labels[grown] == index


def _tissue_floor(t1: np.ndarray) -> float:
    """Intensity below which a voxel is background or CSF: half the median of the head's tissue.

    Otsu separates the head from the background (a subsample is plenty for a histogram); FLAIR
    suppresses CSF below half the tissue's level. Half the median, rather than Otsu's threshold
    itself, keeps all tissue when a scan has no background (Otsu would then split the tissue).
    """
    sample = t1[::2, ::2, ::2]
    return DARK_FRACTION * float(np.median(sample[sample > threshold_otsu(sample)]))


def _drift_field(corners: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Trilinear field through the 2x2x2 ``corners`` (values at the corner voxels), built per axis."""
    ramps = [np.linspace(0.0, 1.0, n, dtype=np.float32) for n in shape]
    x, y, z = (np.stack([1.0 - r, r]) for r in ramps)
    # Contract one axis at a time: a few small products instead of a 3D interpolation.
    return np.einsum("ijk,ix,jy,kz->xyz", corners, x, y, z, optimize=True).astype(np.float32)


def _grain(volume: np.ndarray) -> np.ndarray:
    """The volume minus its smooth level: noise and fine texture."""
    return volume - ndimage.gaussian_filter(volume, TEXTURE_SIGMA_VOXELS, truncate=TRUNCATE)


def _robust_sd(values: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def _grain_like(grain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random field with the power spectrum of ``grain`` (its phases drawn anew): the scan's
    own noise correlation and roughness, at independent values and without its structures."""
    phases = np.angle(fft.rfftn(rng.standard_normal(grain.shape, dtype=np.float32), workers=-1))
    spectrum = np.abs(fft.rfftn(grain, workers=-1)) * np.exp(1j * phases)
    spectrum[0, 0, 0] = 0.0  # zero mean: a level, not grain
    return fft.irfftn(spectrum, s=grain.shape, workers=-1).astype(np.float32)


def _reacquire(t0: np.ndarray, t1: np.ndarray, evolution: Evolution, floor: float) -> np.ndarray:
    """t0 as a second session would give it: resampled at ``evolution.shift`` (linear, which
    smooths its grain) plus a field with t1's grain spectrum, scaled so that t0's roughness in the
    tissue (robust spread of its Laplacian) is t1's again. Voxels not acquired (0) stay 0;
    acquired ones stay above t1's smallest value."""
    moved = ndimage.shift(t0, evolution.shift, order=1, mode="nearest")
    tissue = t1 > floor
    grain = _grain(t1)
    spread = _robust_sd(grain[tissue])
    # The spectrum of the tissue's grain alone: beyond OUTLIER_SD it is edges, not noise.
    texture = np.where(tissue, np.clip(grain, -OUTLIER_SD * spread, OUTLIER_SD * spread), 0.0)
    noise = _grain_like(texture, np.random.default_rng(evolution.noise_seed))
    roughness = [_robust_sd(ndimage.laplace(volume)[tissue]) for volume in (t1, moved, noise)]
    noise *= np.sqrt(max(roughness[0] ** 2 - roughness[1] ** 2, 0.0)) / max(roughness[2], 1e-12)
    lowest = float(t1[t1 > 0].min())
    return np.where(moved > 0, np.maximum(moved + noise, lowest), 0.0).astype(np.float32)


def apply_evolution(
    t1: np.ndarray,
    lesion_labels: np.ndarray,
    evolution: Evolution,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray]:
    """The pseudo baseline (float32) and the new-lesion mask (uint8, exactly the removed lesions).

    ``spacing`` (mm) shapes the baseline cores of grown lesions; the fill's distances are in voxels.
    """
    spacing_mm = np.asarray(spacing, dtype=float)
    t0 = t1.astype(np.float32, copy=True)
    changing = np.isin(lesion_labels, evolution.removed + evolution.grown)
    floor = _tissue_floor(t1)
    if changing.any():
        for box, tight, group in _groups(changing):
            _fill_group(t0, t1, lesion_labels, box, tight, group, evolution, spacing_mm, floor)
    if any(d != 1.0 for d in evolution.drift):
        t0 *= _drift_field(np.asarray(evolution.drift, dtype=np.float32).reshape(2, 2, 2), t0.shape)
    if evolution.noise_seed is not None:
        t0 = _reacquire(t0, t1, evolution, floor)
    return t0, np.isin(lesion_labels, evolution.removed).astype(np.uint8)


def simulate_evolution(
    t1: np.ndarray,
    consensus: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    *,
    new_fraction: float = 0.5,
    grow_fraction: float = ENLARGING_SHARE,
    drift: float = 0.0,
    reacquire: bool = False,
) -> tuple[np.ndarray, np.ndarray, Evolution]:
    """Turn one scan and its lesion mask into a (pseudo t0, new-lesion mask) pair.

    Args:
        t1: the real scan (becomes the follow-up).
        consensus: its lesion mask (0/1); lesions follow :func:`runtime.lesions.label_lesions`.
        spacing: voxel sizes in mm.
        seed: all random choices derive from it.
        new_fraction: share of lesions erased from t0 (at least one when there are any).
        grow_fraction: share of the other lesions smaller at t0 (enlarging; not in the mask).
        drift: maximum relative intensity drift of t0 (0.05 = up to 5 % at the corners).
        reacquire: t0 becomes a second acquisition (sub-voxel resampling, noise of its own).

    Returns:
        pseudo t0 (float32), new-lesion mask (uint8, exactly the erased lesions), the draws.
    """
    lesion_labels, n_lesions = label_lesions(consensus, spacing)
    volumes = np.bincount(lesion_labels.ravel(), minlength=n_lesions + 1)[1:] * float(np.prod(spacing))
    evolution = draw_evolution(
        volumes, np.random.default_rng(seed), new_fraction, grow_fraction, drift, reacquire
    )
    t0, new = apply_evolution(t1, lesion_labels, evolution, spacing)
    return t0, new, evolution


def erase_lesions(
    scan: np.ndarray, lesions: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """``scan`` (float32) with every lesion of the 0/1 mask ``lesions`` erased as a pseudo
    baseline erases its new lesions; voxels beyond their rim and blend are the scan's own.

    A real pair's follow-up with its new lesions erased is a lesion-free copy of the pair: two
    real sessions, all their variation, and no new lesion.
    """
    labels, count = label_lesions(lesions, spacing, min_volume_mm3=0.0)  # every voxel, however small
    keep = (1.0,) * 8
    return apply_evolution(scan, labels, Evolution(tuple(range(1, count + 1)), (), (), keep), spacing)[0]
