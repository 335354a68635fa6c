"""One phantom case, drawn from ``numpy.random.default_rng([seed, index])`` (nothing written).

The MNI152 brain (:mod:`~simulation.phantom.anatomy`) is seen through a small random affine with
FLAIR contrast from a scanner profile (:mod:`~simulation.phantom.scanners`). Existing lesions
appear at both time points (some enlarge at t1; enlarging is not new and not in the ground
truth), new lesions at t1 only; they are irregular blobs (:mod:`~simulation.phantom.blobs`) in
white matter, mostly periventricular. Four simulated raters (:mod:`~simulation.phantom.raters`)
disagree mildly; the ground truth is the voxels at least 3 of them marked.

The realistic mode adds a head (:mod:`~simulation.phantom.head`) on a clinical field of view,
optional thick slices, integer storage and a t0 whose field of view ends earlier
(:mod:`~simulation.phantom.acquisition`), drawn by a generator of their own (the default is unchanged).

>>> case = make_case(0, seed=0, voxel=4.0, realistic=True)
>>> case.t1.dtype in (np.uint16, np.int16), case.consensus.shape, case.row["new_lesions"], case.row["scanner"]
(True, (60, 60, 52), 7, 'siemens_aera_1.5T')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from runtime.lesions import ENLARGING_GROWTH, ENLARGING_SHARE, count_lesions
from simulation.phantom.acquisition import (
    FieldOfViewCut,
    draw_fov_cuts,
    field_of_view_mask,
    integer_storage,
    slices_per_thick,
    thick_affine,
    thicken,
)
from simulation.phantom.anatomy import (
    Atlas,
    load_atlas,
    random_subject_transform,
    render_tissue,
    sample_sites,
)
from simulation.phantom.blobs import Blob, random_blob, rasterise
from simulation.phantom.head import (
    FOV_CENTRE_MM,
    FOV_MM,
    HeadLayers,
    draw_head_layers,
    draw_head_levels,
    head_signal,
    load_head_model,
    place_head,
)
from simulation.phantom.raters import consensus, simulate_raters
from simulation.phantom.scanners import PROFILES, ScannerProfile, acquire

__all__ = ["PhantomCase", "make_case", "random_misalignment"]

LESION_MM3 = (3.5, 1000.0)  # just over the MSSEG-2 minimum, up to 1 cm³ (log-uniform)
FALSE_LESION_MM3 = (4.0, 30.0)
EXISTING = (3, 15)  # existing lesions per case (inclusive)
NEW = (1, 8)  # new lesions per case, except one case in four that has none
SCANNER_CHANGE_PROBABILITY = 0.3  # follow-up on another scanner; otherwise the same one, drifted
FALSE_LESION_PROBABILITY = 0.15  # per rater and case
MISALIGN_DEGREES = (1.0, 5.0)
MISALIGN_MM = (1.0, 5.0)
REALISTIC_STREAM = 1  # the realistic draws: default_rng([seed, index, REALISTIC_STREAM])
BRAIN_WEIGHTS = np.ones(3, np.float32)  # tissue weights that render the brain's fraction
MASK_FRACTION = 0.5  # a thick voxel belongs to a mask when at least half of it does


@dataclass(frozen=True)
class PhantomCase:
    """One generated case: images and masks on the t1 grid, plus its cases.csv row."""

    t0: np.ndarray
    t1: np.ndarray
    consensus: np.ndarray
    raters: list[np.ndarray]
    brain_mask: np.ndarray
    affine: np.ndarray
    row: dict[str, object]
    details: dict[str, object]


@dataclass(frozen=True)
class Realism:
    """The realistic mode's draws for one case: head, integer storage, t0's field of view."""

    layers: HeadLayers
    head_levels: tuple[np.ndarray, np.ndarray]  # t0, t1
    profiles: tuple[ScannerProfile, ScannerProfile]  # t0, t1 with integer storage
    cuts: list[FieldOfViewCut]


def _grid(atlas: Atlas, voxel: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """An isotropic RAS grid over the template's field of view, centred like it."""
    extent = np.array(atlas.fractions.shape[1:]) * np.abs(np.diag(atlas.affine)[:3])
    shape = tuple(int(n) for n in np.maximum(np.round(extent / voxel), 1))
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = atlas.centre_mm - voxel * (np.array(shape) - 1) / 2
    return shape, affine  # type: ignore[return-value]


def _head_grid(voxel: float, thick: int) -> tuple[tuple[int, int, int], np.ndarray]:
    """An isotropic RAS grid over the clinical field of view; whole thick slices along z."""
    counts = np.maximum(np.round(np.asarray(FOV_MM) / (voxel * np.array([1, 1, thick]))), 1)
    shape = tuple(int(n) for n in counts * [1, 1, thick])
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = np.asarray(FOV_CENTRE_MM) - voxel * (np.array(shape) - 1) / 2
    return shape, affine  # type: ignore[return-value]


def random_misalignment(rng: np.random.Generator, centre_mm: np.ndarray) -> dict[str, list]:
    """A random rigid transform in the SimpleITK registration convention (fixed t1 -> moving t0).

    ``t1_to_t0_world`` maps a physical point (mm, RAS world of the NIfTI affine) of the t1
    anatomy to where the same anatomy sits in t0: ``q = R (p - c) + c + t`` with
    ``R`` = ``rotation_deg`` (scipy extrinsic "xyz" Euler angles), ``c`` = ``center_mm``,
    ``t`` = ``translation_mm``. SimpleITK works in LPS: flip the signs of x and y first.
    """
    axis = rng.normal(size=3)
    rotation = Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.radians(rng.uniform(*MISALIGN_DEGREES)))
    direction = rng.normal(size=3)
    translation = direction / np.linalg.norm(direction) * rng.uniform(*MISALIGN_MM)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation.as_matrix()
    matrix[:3, 3] = centre_mm - rotation.as_matrix() @ centre_mm + translation
    return {
        "t1_to_t0_world": matrix.tolist(),
        "rotation_deg": rotation.as_euler("xyz", degrees=True).tolist(),
        "translation_mm": translation.tolist(),
        "center_mm": np.asarray(centre_mm, float).tolist(),
    }


def _place_blobs(
    atlas: Atlas,
    rng: np.random.Generator,
    to_atlas: np.ndarray,
    volumes: np.ndarray,
    growth: np.ndarray,
    placed: list[tuple[Blob, float]],
    gap_mm: float,
) -> tuple[list[Blob], np.ndarray]:
    """Blobs of these volumes at white-matter sites, each ``gap_mm`` clear of the others
    (grown by ``growth``); returns them and the growth of each (a blob with no room is dropped)."""
    to_subject = np.linalg.inv(to_atlas)
    blobs, kept = [], []
    for volume, factor in zip(volumes, growth, strict=True):
        shape = random_blob(rng, np.zeros(3), float(volume))
        reach = shape.extent_mm * factor
        sites = sample_sites(atlas, rng, 30, min_room_mm=0.6 * float(shape.radii.mean() * factor))
        sites = sites @ to_subject[:3, :3].T + to_subject[:3, 3]
        for site in sites:  # the first site clear of every blob placed so far
            if all(np.linalg.norm(site - b.centre) > reach + r + gap_mm for b, r in placed):
                blob = Blob(site, shape.radii, shape.rotation, shape.waves, shape.phases, shape.amplitudes)
                placed.append((blob, reach))
                blobs.append(blob)
                kept.append(factor)
                break
    return blobs, np.array(kept, float)


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], count: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]), count))


def _paint(
    clean: np.ndarray,
    blobs: list[tuple[Blob, float]],
    affine: np.ndarray,
    voxel: float,
    to_blob: np.ndarray | None = None,
) -> np.ndarray:
    """Blend blobs (with their signal level) into ``clean``; returns the union of their masks."""
    mask = np.zeros(clean.shape, bool)
    for blob, level in blobs:
        patch = rasterise(blob, clean.shape, affine, voxel, to_blob)
        clean[patch.where] += patch.fraction * (level - clean[patch.where])
        mask[patch.where] |= patch.mask
    return mask


@dataclass(frozen=True)
class Lesions:
    """A case's lesions: existing ones (grown at t1 by ``growth``), new ones, their signals."""

    existing: list[Blob]
    growth: np.ndarray
    new: list[Blob]
    placed: list[tuple[Blob, float]]  # every blob with its reach, to keep false lesions clear
    level0: np.ndarray  # signal of each existing lesion at t0
    level1: np.ndarray  # ... of each existing, then each new lesion at t1


def _draw_lesions(
    atlas: Atlas,
    rng: np.random.Generator,
    to_atlas: np.ndarray,
    profiles: tuple[ScannerProfile, ScannerProfile],
    any_new: bool,
    voxel: float,
) -> Lesions:
    n_existing = int(rng.integers(EXISTING[0], EXISTING[1] + 1))
    n_new = int(rng.integers(NEW[0], NEW[1] + 1)) if any_new else 0
    growth = np.where(
        rng.random(n_existing) < ENLARGING_SHARE, rng.uniform(*ENLARGING_GROWTH, n_existing), 1.0
    )
    placed: list[tuple[Blob, float]] = []
    gap = 2.0 * voxel  # keeps lesions apart on the grid: new lesions never touch old ones
    existing, growth = _place_blobs(
        atlas, rng, to_atlas, _log_uniform(rng, LESION_MM3, n_existing), growth, placed, gap
    )
    new, _ = _place_blobs(
        atlas, rng, to_atlas, _log_uniform(rng, LESION_MM3, n_new), np.ones(n_new), placed, gap
    )
    level0 = profiles[0].lesion * rng.uniform(0.85, 1.1, len(existing))
    level1 = profiles[1].lesion * rng.uniform(0.85, 1.1, len(existing) + len(new))
    return Lesions(existing, growth, new, placed, level0, level1)


def _paint_lesions(
    cleans: tuple[np.ndarray, np.ndarray],
    lesions: Lesions,
    affine: np.ndarray,
    voxel: float,
    t0_to_anatomy: np.ndarray,
) -> np.ndarray:
    """Paint the lesions into the clean t0 and t1 (in place); returns the new lesions' mask."""
    n_existing = len(lesions.existing)
    grown = [b.scaled(g) for b, g in zip(lesions.existing, lesions.growth, strict=True)]
    _paint(cleans[1], list(zip(grown, lesions.level1, strict=False)), affine, voxel)
    truth = _paint(cleans[1], list(zip(lesions.new, lesions.level1[n_existing:], strict=True)), affine, voxel)
    _paint(cleans[0], list(zip(lesions.existing, lesions.level0, strict=True)), affine, voxel, t0_to_anatomy)
    return truth


def _profiles(rng: np.random.Generator) -> tuple[ScannerProfile, ScannerProfile]:
    names = sorted(PROFILES)
    baseline = PROFILES[names[rng.integers(len(names))]]
    if rng.random() < SCANNER_CHANGE_PROBABILITY:
        return baseline, PROFILES[names[rng.integers(len(names))]]
    return baseline, baseline.drifted(rng)


def _draw_realism(
    seed: int,
    index: int,
    profiles: tuple[ScannerProfile, ScannerProfile],
    shape: tuple[int, int, int],
    affine: np.ndarray,
) -> Realism:
    rng = np.random.default_rng([seed, index, REALISTIC_STREAM])
    layers = draw_head_layers(rng)
    levels = (draw_head_levels(profiles[0], rng), draw_head_levels(profiles[1], rng))
    stored = (integer_storage(profiles[0], rng), integer_storage(profiles[1], rng))
    return Realism(layers, levels, stored, draw_fov_cuts(rng, shape, affine))


def _add_heads(
    cleans: tuple[np.ndarray, np.ndarray],
    transforms: tuple[np.ndarray, np.ndarray],
    brain1: np.ndarray,
    affine: np.ndarray,
    voxel: float,
    realism: Realism,
) -> None:
    """Add the head to the clean t0 and t1 (in place); t0 sees it through its own transform."""
    model, shape = load_head_model(), cleans[1].shape
    fields1 = place_head(model, shape, affine, transforms[1])
    moved = not np.array_equal(transforms[0], transforms[1])
    fields0 = place_head(model, shape, affine, transforms[0]) if moved else fields1
    brain0 = render_tissue(load_atlas(), BRAIN_WEIGHTS, shape, affine, transforms[0]) if moved else brain1
    for clean, fields, brain, levels in zip(
        cleans, (fields0, fields1), (brain0, brain1), realism.head_levels, strict=True
    ):
        clean += head_signal(fields, brain, realism.layers, levels, voxel)


def _thick_mask(mask: np.ndarray, thick: int) -> np.ndarray:
    return thicken(mask.astype(np.float32), thick) >= MASK_FRACTION


def make_case(
    index: int,
    seed: int = 0,
    voxel: float = 1.0,
    misalign: bool = False,
    realistic: bool = False,
    slice_thickness: float | None = None,
) -> PhantomCase:
    """Generate case number ``index`` of the phantom drawn with ``seed`` (nothing written).

    ``realistic`` adds the head, integer storage and t0's shorter field of view;
    ``slice_thickness`` (mm, a whole multiple of ``voxel``) then gives thick axial slices:
    the case is rendered at ``voxel`` and averaged over each slice.
    """
    rng = np.random.default_rng([seed, index])
    atlas = load_atlas()
    thick = 1 if slice_thickness is None else slices_per_thick(voxel, slice_thickness)
    shape, affine = _head_grid(voxel, thick) if realistic else _grid(atlas, voxel)
    stored_shape, stored_affine = (shape[0], shape[1], shape[2] // thick), thick_affine(affine, thick)
    spacing = (voxel, voxel, voxel * thick)
    to_atlas = random_subject_transform(rng, atlas.centre_mm)
    profile0, profile1 = _profiles(rng)

    lesions = _draw_lesions(atlas, rng, to_atlas, (profile0, profile1), (index + seed) % 4 != 1, voxel)
    existing, growth, new = lesions.existing, lesions.growth, lesions.new
    misalignment = (
        random_misalignment(rng, affine[:3, :3] @ (np.array(shape) - 1) / 2 + affine[:3, 3])
        if misalign
        else None
    )
    t1_to_t0 = np.eye(4) if misalignment is None else np.array(misalignment["t1_to_t0_world"])
    t0_to_anatomy = np.linalg.inv(t1_to_t0)
    realism = (
        _draw_realism(seed, index, (profile0, profile1), stored_shape, stored_affine) if realistic else None
    )

    brain = render_tissue(atlas, BRAIN_WEIGHTS, shape, affine, to_atlas)
    clean1 = render_tissue(atlas, profile1.tissue_weights(), shape, affine, to_atlas)
    clean0 = render_tissue(atlas, profile0.tissue_weights(), shape, affine, to_atlas @ t0_to_anatomy)
    if realism is not None:
        _add_heads((clean0, clean1), (to_atlas @ t0_to_anatomy, to_atlas), brain, affine, voxel, realism)
    truth = _paint_lesions((clean0, clean1), lesions, affine, voxel, t0_to_anatomy)

    false_lesions = [
        None if mask is None else _thick_mask(mask, thick)
        for mask in _false_lesions(atlas, rng, to_atlas, lesions.placed, shape, affine, voxel)
    ]
    raters = simulate_raters(_thick_mask(truth, thick), rng, spacing, false_lesions)
    agreed = consensus(raters)
    row = {
        "scanner": profile1.name,
        "new_lesions": count_lesions(agreed, spacing),
        "new_lesion_voxels": int(agreed.sum()),
        "existing_lesions": len(existing),
        "enlarging_lesions": int((growth > 1).sum()),
        "misaligned": misalign,
    }
    details = {
        "seed": seed,
        "voxel_mm": voxel,
        "scanner_t0": profile0.name,
        "scanner_t1": profile1.name,
        "subject_to_mni_world": to_atlas.tolist(),
        "new_lesion_mm3": [round(b.volume_mm3, 2) for b in new],
        "existing_lesion_mm3": [round(b.volume_mm3, 2) for b in existing],
        "new_lesion_centres_mm": [np.round(b.centre, 2).tolist() for b in new],
        "existing_lesion_centres_mm": [np.round(b.centre, 2).tolist() for b in existing],
        "enlarging_factor": [round(float(g), 3) for g in growth],
        "misalignment": misalignment,
    }
    stored0, stored1 = (profile0, profile1) if realism is None else realism.profiles
    t0 = acquire(thicken(clean0, thick), stored0, rng)
    t1 = acquire(thicken(clean1, thick), stored1, rng)
    if realism is not None:
        seen = field_of_view_mask(stored_shape, stored_affine, realism.cuts)
        t0[~seen] = 0
        details["realistic"] = _realistic_details(realism, slice_thickness, spacing, seen)
    brain_mask = (thicken(brain, thick) >= MASK_FRACTION).astype(np.uint8)
    return PhantomCase(t0, t1, agreed, raters, brain_mask, stored_affine, row, details)


def _realistic_details(
    realism: Realism, slice_thickness: float | None, spacing: tuple[float, ...], seen: np.ndarray
) -> dict[str, object]:
    """What phantom.json records of the realistic mode."""
    return {
        "slice_thickness_mm": slice_thickness,
        "spacing_mm": list(spacing),
        "storage_t0": realism.profiles[0].dtype,
        "storage_t1": realism.profiles[1].dtype,
        "head_layers_mm": {name: round(value, 2) for name, value in asdict(realism.layers).items()},
        "t0_field_of_view": [cut.to_json() for cut in realism.cuts],
        "t0_zero_filled_voxels": int((~seen).sum()),
    }


def _false_lesions(
    atlas: Atlas,
    rng: np.random.Generator,
    to_atlas: np.ndarray,
    placed: list[tuple[Blob, float]],
    shape: tuple[int, int, int],
    affine: np.ndarray,
    voxel: float,
) -> list[np.ndarray | None]:
    """Per rater, now and then one small lesion that is not there (None otherwise)."""
    masks: list[np.ndarray | None] = []
    for draw in rng.random(4):
        blobs = (
            _place_blobs(
                atlas, rng, to_atlas, _log_uniform(rng, FALSE_LESION_MM3, 1), np.ones(1), placed, 3 * voxel
            )[0]
            if draw < FALSE_LESION_PROBABILITY
            else []
        )
        mask = None
        if blobs:
            patch = rasterise(blobs[0], shape, affine, voxel)
            mask = np.zeros(shape, bool)
            mask[patch.where] = patch.mask
        masks.append(mask)
    return masks
