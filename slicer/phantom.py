"""Synthetic longitudinal FLAIR phantom in the MSSEG-2 layout (``slicer phantom OUT``).

Each case is the MNI152 2009 brain (:mod:`slicer.anatomy`) seen through a small random
affine, with FLAIR contrast, bias field and Rician noise from a named scanner profile
(:mod:`slicer.scanners`). Existing lesions appear at both time points (some enlarge at
t1; enlarging is not new and not in the ground truth), new lesions at t1 only; they are
irregular blobs (:mod:`slicer.blobs`) of 3.5 mm³ to 1 cm³, mostly periventricular and in
deep white matter. Four simulated raters (:mod:`slicer.raters`) disagree mildly; the
ground truth is the voxels at least 3 of them marked. One case in four has no new
lesion. Everything is drawn from ``numpy.random.default_rng([seed, case_index])``, so a
seed gives byte-identical files and a case does not depend on the others.

Written per case (into ``OUT/<case>/``, atomically): ``flair_time01_on_middle_space.nii.gz``
(t0), ``flair_time02_on_middle_space.nii.gz`` (t1), ``ground_truth.nii.gz``,
``ground_truth_expert{1..4}.nii.gz``, ``phantom.json`` (how the case was made) and, with
``misalign``, ``misalignment.json``; then ``OUT/cases.csv`` (one row per case).

>>> table = write_phantom(Path("/tmp/ph"), cases=2, voxel=2.0)  # doctest: +SKIP
>>> list(table.columns)  # doctest: +SKIP
['case', 'scanner', 'new_lesions', 'new_lesion_voxels', 'existing_lesions', 'enlarging_lesions', 'misaligned']
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from slicer.anatomy import Atlas, load_atlas, random_subject_transform, render_tissue, sample_sites
from slicer.blobs import Blob, random_blob, rasterise
from slicer.errors import InputError
from slicer.io import atomic_dir, atomic_path, save_nifti
from slicer.lesions import count_lesions
from slicer.raters import consensus, simulate_raters
from slicer.scanners import PROFILES, ScannerProfile, acquire

__all__ = ["write_phantom", "make_case", "random_misalignment", "COLUMNS"]

COLUMNS = [
    "case",
    "scanner",
    "new_lesions",
    "new_lesion_voxels",
    "existing_lesions",
    "enlarging_lesions",
    "misaligned",
]
T0_NAME = "flair_time01_on_middle_space.nii.gz"
T1_NAME = "flair_time02_on_middle_space.nii.gz"
LESION_MM3 = (3.5, 1000.0)  # just over the MSSEG-2 minimum, up to 1 cm³ (log-uniform)
FALSE_LESION_MM3 = (4.0, 30.0)
EXISTING = (3, 15)  # existing lesions per case (inclusive)
NEW = (1, 8)  # new lesions per case, except one case in four that has none
ENLARGING_PROBABILITY = 0.3
ENLARGING_FACTOR = (1.25, 1.6)  # linear growth of an enlarging lesion
SCANNER_CHANGE_PROBABILITY = 0.3  # follow-up on another scanner; otherwise the same one, drifted
FALSE_LESION_PROBABILITY = 0.15  # per rater and case
MISALIGN_DEGREES = (1.0, 5.0)
MISALIGN_MM = (1.0, 5.0)


@dataclass(frozen=True)
class PhantomCase:
    """One generated case: images and masks on the t1 grid, plus its cases.csv row."""

    t0: np.ndarray
    t1: np.ndarray
    consensus: np.ndarray
    raters: list[np.ndarray]
    affine: np.ndarray
    row: dict[str, object]
    details: dict[str, object]


def _grid(atlas: Atlas, voxel: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """An isotropic RAS grid over the template's field of view, centred like it."""
    extent = np.array(atlas.fractions.shape[1:]) * np.abs(np.diag(atlas.affine)[:3])
    shape = tuple(int(n) for n in np.maximum(np.round(extent / voxel), 1))
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = atlas.centre_mm - voxel * (np.array(shape) - 1) / 2
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


def _profiles(rng: np.random.Generator) -> tuple[ScannerProfile, ScannerProfile]:
    names = sorted(PROFILES)
    baseline = PROFILES[names[rng.integers(len(names))]]
    if rng.random() < SCANNER_CHANGE_PROBABILITY:
        return baseline, PROFILES[names[rng.integers(len(names))]]
    return baseline, baseline.drifted(rng)


def make_case(index: int, seed: int = 0, voxel: float = 1.0, misalign: bool = False) -> PhantomCase:
    """Generate case number ``index`` of the phantom drawn with ``seed`` (nothing written)."""
    rng = np.random.default_rng([seed, index])
    atlas = load_atlas()
    shape, affine = _grid(atlas, voxel)
    to_atlas = random_subject_transform(rng, atlas.centre_mm)
    profile0, profile1 = _profiles(rng)

    n_existing = int(rng.integers(EXISTING[0], EXISTING[1] + 1))
    n_new = 0 if (index + seed) % 4 == 1 else int(rng.integers(NEW[0], NEW[1] + 1))
    growth = np.where(
        rng.random(n_existing) < ENLARGING_PROBABILITY, rng.uniform(*ENLARGING_FACTOR, n_existing), 1.0
    )
    placed: list[tuple[Blob, float]] = []
    gap = 2.0 * voxel  # keeps lesions apart on the grid: new lesions never touch old ones
    existing, growth = _place_blobs(
        atlas, rng, to_atlas, _log_uniform(rng, LESION_MM3, n_existing), growth, placed, gap
    )
    new, _ = _place_blobs(
        atlas, rng, to_atlas, _log_uniform(rng, LESION_MM3, n_new), np.ones(n_new), placed, gap
    )
    level0 = profile0.lesion * rng.uniform(0.85, 1.1, len(existing))
    level1 = profile1.lesion * rng.uniform(0.85, 1.1, len(existing) + len(new))

    misalignment = (
        random_misalignment(rng, affine[:3, :3] @ (np.array(shape) - 1) / 2 + affine[:3, 3])
        if misalign
        else None
    )
    t1_to_t0 = np.eye(4) if misalignment is None else np.array(misalignment["t1_to_t0_world"])
    t0_to_anatomy = np.linalg.inv(t1_to_t0)

    clean1 = render_tissue(atlas, profile1.tissue_weights(), shape, affine, to_atlas)
    grown = [b.scaled(g) for b, g in zip(existing, growth, strict=True)]
    _paint(clean1, list(zip(grown, level1, strict=False)), affine, voxel)
    truth = _paint(clean1, list(zip(new, level1[len(existing) :], strict=True)), affine, voxel)
    clean0 = render_tissue(atlas, profile0.tissue_weights(), shape, affine, to_atlas @ t0_to_anatomy)
    _paint(clean0, list(zip(existing, level0, strict=True)), affine, voxel, t0_to_anatomy)

    false_lesions = _false_lesions(atlas, rng, to_atlas, placed, shape, affine, voxel)
    raters = simulate_raters(truth, rng, voxel, false_lesions)
    agreed = consensus(raters)
    row = {
        "scanner": profile1.name,
        "new_lesions": count_lesions(agreed, (voxel,) * 3),
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
    t0 = acquire(clean0, profile0, rng)
    t1 = acquire(clean1, profile1, rng)
    return PhantomCase(t0, t1, agreed, raters, affine, row, details)


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


def _write_case(case: PhantomCase, folder: Path) -> None:
    save_nifti(case.t0, case.affine, folder / T0_NAME)
    save_nifti(case.t1, case.affine, folder / T1_NAME)
    save_nifti(case.consensus, case.affine, folder / "ground_truth.nii.gz")
    for rater, mask in enumerate(case.raters, start=1):
        save_nifti(mask, case.affine, folder / f"ground_truth_expert{rater}.nii.gz")
    if case.details["misalignment"] is not None:
        (folder / "misalignment.json").write_text(json.dumps(case.details["misalignment"], indent=2) + "\n")
    (folder / "phantom.json").write_text(json.dumps({**case.row, **case.details}, indent=2) + "\n")


def _finished_row(folder: Path, seed: int, voxel: float, misalign: bool) -> dict[str, object] | None:
    """The row of a case written earlier with the same settings (None if absent)."""
    record = folder / "phantom.json"
    if not record.is_file():
        return None
    details = json.loads(record.read_text())
    if (details.get("seed"), details.get("voxel_mm"), details.get("misaligned")) != (seed, voxel, misalign):
        raise InputError(
            folder,
            f"was written with seed {details.get('seed')}, voxel {details.get('voxel_mm')} mm, "
            f"misaligned {details.get('misaligned')}; use --overwrite to replace it",
        )
    return {key: details[key] for key in COLUMNS[1:]}


def write_phantom(
    out: Path,
    cases: int = 8,
    voxel: float = 1.0,
    seed: int = 0,
    misalign: bool = False,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Write ``cases`` phantom patients to ``out`` and return the ``cases.csv`` table.

    Args:
        out: dataset root (created if needed); load it as dataset ``phantom``.
        cases: number of patients (ids ``case000``, ``case001``...).
        voxel: isotropic voxel size in mm (1.0: 197x233x189 voxels; 2.0: 98x116x94).
        seed: random seed; the same seed gives byte-identical files.
        misalign: move t0 by a known rigid transform on the t1 grid; the transform is saved
            as ``<case>/misalignment.json`` (see :func:`random_misalignment` for its convention).
        overwrite: rewrite cases that exist; otherwise they are kept and only listed.
    """
    if cases < 1:
        raise InputError("--cases", f"must be at least 1 (got {cases})")
    if not voxel > 0:
        raise InputError("--voxel", f"must be positive (got {voxel})")
    out = Path(out)
    folders = [out / f"case{index:03d}" for index in range(cases)]
    # Check what exists before the progress bar starts, so a clash is one clean error line.
    finished = [None if overwrite else _finished_row(f, seed, voxel, misalign) for f in folders]
    rows = []
    for index in tqdm(range(cases), desc="phantom", unit="case"):
        folder, row = folders[index], finished[index]
        if row is None:
            case = make_case(index, seed, voxel, misalign)
            with atomic_dir(folder) as tmp:
                _write_case(case, tmp)
            row = case.row
        rows.append({"case": folder.name, **row})
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_path(out / "cases.csv") as tmp:
        table.to_csv(tmp, index=False)
    return table
