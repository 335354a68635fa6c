"""``slicer export-nnunet``: the cases ``slicer export`` prepares, written as an nnU-Net v2 raw dataset.

One code path, two writers: every case goes through :func:`slicer.export.prepare_export_case`
(loading, registration of t0 onto t1, brain mask, joint field of view, normalisation), then this
module writes its volumes where ``slicer export`` writes slices. Layout (nnU-Net's own)::

    OUT/Dataset501_<name>/
        imagesTr/<case>_0000.nii.gz   baseline (t0) registered onto the follow-up
        imagesTr/<case>_0001.nii.gz   follow-up (t1)
        imagesTr/<case>_0002.nii.gz   difference (with ``diff``)
        labelsTr/<case>.nii.gz        new-lesion label (0/1)
        imagesTs/<case>_000X.nii.gz   test cases (``--split test`` or the registry's)
        dataset.json, splits_final.json

Volumes lie on the follow-up's *original* grid, the grid nnU-Net users expect (nnU-Net resamples
itself) and the one MSSEG-2 scores in; labels are the dataset's own, untouched. The channels are
the very uint8 volumes the 2D slices hold (:attr:`PreparedCase.volumes`), mapped back with
:meth:`CaseGeometry.to_original`, so that all three model families see the same intensities and a
trained nnU-Net can be run on a 2D export's cases (:mod:`fusion.volumes`). ``splits_final.json``
holds one fold, our train/val split, so nnU-Net's fold 0 validates on the cases the 2D models
validate on (``nnUNetv2_plan_and_preprocess`` copies it into ``nnUNet_preprocessed``).

The dataset is built in a temporary folder beside its target, checked by nnU-Net's own
``verify_dataset_integrity`` and only then renamed: a refused dataset leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime.errors import InputError
from runtime.files import atomic_dir, save_nifti
from slicer.datasets import Case
from slicer.export import ExportOptions, parse_label, prepare_export_case, select_cases
from slicer.geometry import CaseGeometry
from slicer.register import RegistrationError

__all__ = [
    "NNUNET_SOURCES",
    "NnUNetSummary",
    "channels_on_original",
    "dataset_folder_name",
    "export_nnunet",
    "split_folds",
]

# Channel order of the raw dataset: t0, t1, then (optionally) their difference. nnU-Net
# z-scores every channel whose name is not one of its own schemes (CT, noNorm...).
NNUNET_SOURCES = ("t0", "t1", "diff")
FILE_ENDING = ".nii.gz"
LABELS = {"background": 0, "new_lesion": 1}
PREPARATION_KEYS = (
    "spacing",
    "register",
    "brain_mask",
    "match_histograms",
    "label",
    "seed",
    "simulate_evolution",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass
class NnUNetSummary:
    """What ``slicer export-nnunet`` wrote."""

    folder: Path
    training: int
    test: int
    failed: dict[str, str]

    def line(self) -> str:
        failed = ", ".join(f"{c} ({why})" for c, why in self.failed.items()) or "none"
        # nnU-Net's check needs training cases: a test-only dataset is only input to nnUNetv2_predict.
        checked = "nnU-Net's verify_dataset_integrity accepted it" if self.training else "nothing to verify"
        return (
            f"slicer export-nnunet: {self.training} training and {self.test} test cases, failed: {failed}; "
            f"{checked} -> {self.folder}"
        )


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset501_phantom``: nnU-Net's name for dataset ``dataset_id``."""
    return f"Dataset{dataset_id:03d}_{name}"


def channels_on_original(
    geometry: CaseGeometry, volumes: Mapping[str, np.ndarray], sources: Sequence[str]
) -> list[np.ndarray]:
    """The export-grid uint8 ``volumes`` of ``sources`` on the follow-up's original grid (uint8).

    Linear interpolation; exact where the export grid is the scan's own, zero outside the export
    crop (the head's bounding box).
    """
    missing = [s for s in sources if s not in volumes]
    if missing:
        raise ValueError(f"nnU-Net channels {missing} missing from the case's volumes {sorted(volumes)}")
    originals = (geometry.to_original(volumes[s].astype(np.float32), order=1) for s in sources)
    return [np.clip(np.rint(volume), 0, 255).astype(np.uint8) for volume in originals]


def split_folds(splits: Mapping[str, str]) -> list[dict[str, list[str]]]:
    """nnU-Net's ``splits_final.json``: one fold, our train and val cases."""
    return [{part: sorted(c for c, s in splits.items() if s == part) for part in ("train", "val")}]


def _check_target(out: Path, dataset_id: int, name: str, overwrite: bool) -> Path:
    """The dataset folder to write; refuse an id taken by another name, or this one without ``overwrite``."""
    if not 1 <= dataset_id <= 999:
        raise InputError("--id", f"nnU-Net dataset ids are 1 to 999, not {dataset_id}")
    if not _NAME.match(name):
        raise InputError("--name", f"'{name}' is not a dataset name (letters, digits, _ and -)")
    target = out / dataset_folder_name(dataset_id, name)
    prefix = f"Dataset{dataset_id:03d}_"
    taken = sorted(p.name for p in out.glob(f"{prefix}*") if p.is_dir() and p.name != target.name)
    if taken:
        raise InputError(
            out / taken[0], f"dataset id {dataset_id} is taken by another name; choose another --id"
        )
    if target.exists() and not overwrite:
        raise InputError(target, "exists; use --overwrite to write it again")
    return target


def _write_case(folder: Path, case: Case, split: str, options: ExportOptions, sources: Sequence[str]) -> None:
    prepared, arrays, _ = prepare_export_case(case, options)
    affine, header = arrays["t1_img"].affine, arrays["t1_img"].header
    images = folder / ("imagesTs" if split == "test" else "imagesTr")
    for index, volume in enumerate(channels_on_original(prepared.geometry, prepared.volumes, sources)):
        save_nifti(volume, affine, images / f"{case.id}_{index:04d}{FILE_ENDING}", header)
    if split == "test":
        return
    if arrays["mask"] is None:
        raise InputError(case.t1.parent, f"case '{case.id}' ({split}) has no lesion mask for labelsTr")
    save_nifti(
        arrays["mask"].astype(np.uint8), affine, folder / "labelsTr" / f"{case.id}{FILE_ENDING}", header
    )


def _dataset_json(options: ExportOptions, sources: Sequence[str], training: int) -> dict:
    return {
        "channel_names": {str(i): source for i, source in enumerate(sources)},
        "labels": LABELS,
        "numTraining": training,
        "file_ending": FILE_ENDING,
        "name": options.name or options.dataset,
        "description": f"mslong export-nnunet of dataset '{options.dataset}': new lesions between two FLAIR scans",
        # How the cases were prepared: a 2D export made with the same settings has their grids.
        "mslong_export": {key: getattr(options, key) for key in PREPARATION_KEYS},
    }


@contextmanager
def _stdout_to(path: Path) -> Iterator[None]:
    """Send standard output to ``path``: this process's ``print`` and its worker processes' too."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(path, "w") as sink, redirect_stdout(sink):
        os.dup2(sink.fileno(), 1)  # spawned workers inherit file descriptor 1
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def verify_raw_dataset(folder: Path, processes: int = 1) -> None:
    """nnU-Net's own ``verify_dataset_integrity``; its refusal becomes one :class:`InputError` line."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "verify.log"
        try:
            with _stdout_to(log):  # its workers print their findings; keep the first error
                verify_dataset_integrity(str(folder), num_processes=processes)
        except (AssertionError, RuntimeError, FileNotFoundError) as error:
            said = [line for line in log.read_text().splitlines() if line.lower().startswith("error")]
            detail = said[0] if said else (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise InputError(folder, f"nnU-Net's verify_dataset_integrity refused it: {detail}") from None


def export_nnunet(options: ExportOptions, dataset_id: int, diff: bool = False) -> NnUNetSummary:
    """Write ``options.dataset`` as nnU-Net raw dataset ``dataset_id`` under ``options.out``.

    ``options`` are ``slicer export``'s (spacing, registration, brain mask, label, split...);
    ``options.name`` names the dataset (default: the dataset's name) and ``options.overwrite``
    replaces an existing one. Cases whose registration fails are left out, as by ``slicer export``.
    """
    if parse_label(options.label)[0] == "soft":
        raise InputError("--label", "nnU-Net trains on integer labels: use consensus or rater:N")
    sources = NNUNET_SOURCES if diff else NNUNET_SOURCES[:2]
    # The recipe tells the shared checks that every case needs a t0 (or --simulate-evolution).
    options = replace(options, recipe=("t1", *(s for s in sources if s != "t1")))
    out = Path(options.out)
    target = _check_target(out, dataset_id, options.name or options.dataset, options.overwrite)
    cases, splits = select_cases(options)
    failed: dict[str, str] = {}
    with atomic_dir(target) as folder:
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            (folder / sub).mkdir()
        for case in tqdm(cases, desc=f"exporting {options.dataset} for nnU-Net", unit="case", leave=False):
            try:
                _write_case(folder, case, splits[case.id], options, sources)
            except RegistrationError as error:
                failed[case.id] = str(error)
                print(f"slicer export-nnunet: case {case.id} left out: {error}")
        kept = {c: s for c, s in splits.items() if c not in failed}
        training = sum(s != "test" for s in kept.values())
        (folder / "dataset.json").write_text(json.dumps(_dataset_json(options, sources, training), indent=1))
        if training:
            (folder / "splits_final.json").write_text(json.dumps(split_folds(kept), indent=1))
            verify_raw_dataset(folder, options.workers)
    return NnUNetSummary(target, training, len(kept) - training, failed)
