"""What ``slicer export`` and ``slicer export-nnunet`` can be asked, and what an export wrote.

:class:`ExportOptions` holds every option, checks them (:meth:`ExportOptions.check`) and says
which of them define a case's files (:meth:`ExportOptions.settings`) and which a model trained on
the export depends on (:meth:`ExportOptions.model_settings`).

>>> ExportOptions(dataset="phantom", out=Path("export")).model_settings()["spacing"]
1.0
>>> parse_label("rater:2")
('rater', 2)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import InputError
from slicer.brain import BRAIN_MASK_MODES
from slicer.dataset_yaml import EXPORT_KEYS
from slicer.datasets import SPLITS
from slicer.geometry import ORIENTATIONS
from slicer.io import check_voxel_size
from slicer.prepare import SOURCES
from slicer.register import METHODS

__all__ = ["ExportOptions", "ExportSummary", "parse_label"]


@dataclass(frozen=True)
class ExportOptions:
    """Everything ``slicer export`` can be asked; see ``slicer export --help``.

    ``drop_empty_fraction`` is the share of lesion-free slices left out of *training*
    cases, the quietest first (fewest voxels brightening from t0 to t1, ties drawn with
    ``seed``), so enlarging lesions and scanner artefacts stay in as hard negatives;
    validation and test cases keep every slice.
    """

    dataset: str
    out: Path
    root: Path | None = None
    registry: Path | None = None
    name: str | None = None
    spacing: float = 1.0
    orientations: tuple[str, ...] = ORIENTATIONS
    recipe: tuple[str, ...] = SOURCES
    context: int = 1
    register: str = "auto"
    brain_mask: str = "auto"
    match_histograms: bool = False
    label: str = "consensus"
    val_fraction: float = 0.2
    # Every case in this one split (e.g. "test" for a held-out release); None: --val-fraction.
    split: str | None = None
    seed: int = 0
    drop_empty_fraction: float = 0.0
    simulate_evolution: bool = False
    workers: int = 1
    # Export only these case ids (empty: all). The manifest, YAML and listing need every case:
    # only a run over all of them writes those (runtime.cluster: the submitter, after its tasks).
    cases: tuple[str, ...] = ()
    overwrite: bool = False

    @property
    def yaml_name(self) -> str:
        return self.name or f"{self.dataset}_long"

    def check(self) -> None:
        """Raise :class:`InputError` naming the option at fault."""
        check_voxel_size(self.spacing, "--spacing")
        problems = {
            "--orientations": None
            if self.orientations and set(self.orientations) <= set(ORIENTATIONS)
            else f"use {ORIENTATIONS}",
            "--recipe": None
            if self.recipe and self.recipe[0] == "t1" and set(self.recipe) <= set(SOURCES)
            else f"sources of {SOURCES}, t1 first",
            "--context": None if self.context >= 0 else "must be 0 or more",
            "--register": None if self.register in METHODS else f"use one of {METHODS}",
            "--brain-mask": None if self.brain_mask in BRAIN_MASK_MODES else f"use one of {BRAIN_MASK_MODES}",
            "--val-fraction": None if 0 <= self.val_fraction < 1 else "must be in [0, 1)",
            "--split": None if self.split in (None, *SPLITS) else f"use one of {SPLITS}",
            "--drop-empty-fraction": None if 0 <= self.drop_empty_fraction <= 1 else "must be in [0, 1]",
            "--workers": None if self.workers >= 1 else "must be 1 or more",
        }
        for option, problem in problems.items():
            if problem:
                raise InputError(option, problem)
        parse_label(self.label)

    def settings(self, split: str) -> dict[str, Any]:
        """What defines a case's files; a finished case made with other settings is refused."""
        keys = (*EXPORT_KEYS, "label", "drop_empty_fraction", "simulate_evolution", "seed")
        return {"split": split, **{k: json.loads(json.dumps(getattr(self, k))) for k in keys}}

    def model_settings(self) -> dict[str, Any]:
        """The settings a model trained on this export depends on (recorded in the dataset YAML)."""
        return {k: json.loads(json.dumps(getattr(self, k))) for k in EXPORT_KEYS}


@dataclass
class ExportSummary:
    """What an export wrote (finished cases from earlier runs included)."""

    cases: int
    slices: int
    lesion_slices: int
    seconds: float
    failed: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    yaml_path: Path | None = None

    def line(self) -> str:
        failed = ", ".join(f"{c} ({why})" for c, why in self.failed.items()) or "none"
        return (
            f"slicer export: {self.cases} cases ({self.skipped} already done), {self.slices} slices "
            f"({self.lesion_slices} with lesions) in {self.seconds:.1f} s; failed: {failed} -> {self.yaml_path or 'cases/ only'}"
        )


def parse_label(label: str) -> tuple[str, int]:
    """``consensus`` -> ("consensus", 0); ``rater:2`` -> ("rater", 2); ``soft`` -> ("soft", 0)."""
    kind, _, number = label.partition(":")
    if kind in ("consensus", "soft") and not number:
        return kind, 0
    if kind == "rater" and number.isdigit() and int(number) >= 1:
        return kind, int(number)
    raise InputError("--label", f"'{label}' is not consensus, soft or rater:N")
