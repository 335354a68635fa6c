"""Writing the phantom: one folder per case (atomic), then ``cases.csv``; re-runs keep finished cases."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from runtime.errors import InputError
from runtime.files import atomic_dir, atomic_path, save_nifti
from simulation.phantom.acquisition import slices_per_thick
from simulation.phantom.case import PhantomCase, make_case

__all__ = ["write_phantom", "case_id", "COLUMNS", "T0_NAME", "T1_NAME", "BRAIN_MASK_NAME"]

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
BRAIN_MASK_NAME = "brain_mask.nii.gz"
FIRST_REALISTIC_ID = 13  # MSSEG-2's ids are zero-padded numbers with gaps: 013, 015, 016...


def case_id(index: int, realistic: bool = False) -> str:
    """Folder name of case ``index``: ``case000``..., or realistic ``013``, ``015``, ``017``..."""
    return f"{FIRST_REALISTIC_ID + 2 * index:03d}" if realistic else f"case{index:03d}"


def _write_case(case: PhantomCase, folder: Path) -> None:
    save_nifti(case.t0, case.affine, folder / T0_NAME)
    save_nifti(case.t1, case.affine, folder / T1_NAME)
    save_nifti(case.consensus, case.affine, folder / "ground_truth.nii.gz")
    for rater, mask in enumerate(case.raters, start=1):
        save_nifti(mask, case.affine, folder / f"ground_truth_expert{rater}.nii.gz")
    save_nifti(case.brain_mask, case.affine, folder / BRAIN_MASK_NAME)
    if case.details["misalignment"] is not None:
        (folder / "misalignment.json").write_text(json.dumps(case.details["misalignment"], indent=2) + "\n")
    (folder / "phantom.json").write_text(json.dumps({**case.row, **case.details}, indent=2) + "\n")


def _settings(details: dict) -> dict[str, object]:
    """The settings a phantom.json records (or that ``write_phantom`` was given)."""
    realistic = details.get("realistic")
    return {
        "seed": details.get("seed"),
        "voxel mm": details.get("voxel_mm"),
        "misaligned": details.get("misaligned"),
        "realistic": realistic is not None,
        "slice thickness mm": None if realistic is None else realistic["slice_thickness_mm"],
    }


def _finished_row(folder: Path, wanted: dict[str, object]) -> dict[str, object] | None:
    """The row of a case written earlier with the ``wanted`` settings (None if absent)."""
    record = folder / "phantom.json"
    if not record.is_file():
        return None
    details = json.loads(record.read_text())
    written = _settings(details)
    if written != wanted:
        shown = ", ".join(f"{name} {value}" for name, value in written.items())
        raise InputError(folder, f"was written with {shown}; use --overwrite to replace it")
    return {key: details[key] for key in COLUMNS[1:]}


def write_phantom(
    out: Path,
    cases: int = 8,
    voxel: float = 1.0,
    seed: int = 0,
    misalign: bool = False,
    overwrite: bool = False,
    realistic: bool = False,
    slice_thickness: float | None = None,
) -> pd.DataFrame:
    """Write ``cases`` phantom patients to ``out`` and return the ``cases.csv`` table.

    Args:
        out: dataset root (created if needed); load it as dataset ``phantom``.
        cases: number of patients (ids ``case000``, ``case001``...).
        voxel: isotropic voxel size in mm (1.0: 197x233x189 voxels; 2.0: 98x116x94).
        seed: random seed; the same seed gives byte-identical files.
        misalign: move t0 by a known rigid transform on the t1 grid; the transform is saved
            as ``<case>/misalignment.json`` (see :func:`~simulation.phantom.case.random_misalignment`).
        overwrite: rewrite cases that exist; otherwise they are kept and only listed.
        realistic: a head on a 240 mm field of view (2.0: 120x120x104 voxels), uint16 or int16
            storage, a t0 zero-filled beyond its shorter field of view, ids ``013``, ``015``...
        slice_thickness: with ``realistic``, thick axial slices of this many mm (a whole
            multiple of ``voxel``), stored on a (voxel, voxel, slice_thickness) grid.
    """
    if cases < 1:
        raise InputError("--cases", f"must be at least 1 (got {cases})")
    if not voxel > 0:
        raise InputError("--voxel", f"must be positive (got {voxel})")
    if slice_thickness is not None:
        if not realistic:
            raise InputError("--slice-thickness", "needs --realistic")
        slices_per_thick(voxel, slice_thickness)
    out = Path(out)
    folders = [out / case_id(index, realistic) for index in range(cases)]
    realistic_record = {"slice_thickness_mm": slice_thickness} if realistic else None
    wanted = _settings(
        {"seed": seed, "voxel_mm": voxel, "misaligned": misalign, "realistic": realistic_record}
    )
    # Check what exists before the progress bar starts, so a clash is one clean error line.
    finished = [None if overwrite else _finished_row(f, wanted) for f in folders]
    rows = []
    for index in tqdm(range(cases), desc="phantom", unit="case"):
        folder, row = folders[index], finished[index]
        if row is None:
            case = make_case(index, seed, voxel, misalign, realistic, slice_thickness)
            with atomic_dir(folder) as tmp:
                _write_case(case, tmp)
            row = case.row
        rows.append({"case": folder.name, **row})
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_path(out / "cases.csv") as tmp:
        table.to_csv(tmp, index=False)
    return table
