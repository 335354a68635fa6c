"""A model's record on the validation cases: how the ``lead`` rule picks its leader.

When a prediction folder holds every slice of some cases of its export's validation split
(``unext-long predict`` / ``yolo-long predict`` of ``images/val``, or of a listing that
includes them), those cases are fused as ``reassemble`` fuses them, on the export grid: each
plane alone and the model's own triplanar vote, at the model's operating point, in the region
of interest, old lesions dropped. Each is scored against the export's masks by the MSSEG-2
rules (:func:`fusion.metrics.score_case`) and averaged as ``lesion-eval`` averages (Dice and
lesion scores over the cases with new lesions; false lesions per case without).
:func:`fusion.ensemble.leader_of` picks the leader by them; ``reassemble`` writes every model's
record into its output's ``provenance.json`` (the predictors, beneath ``fusion``, cannot score).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.ensemble import leader_of, member_scores
from fusion.metrics import score_case
from fusion.views import fuse_case, read_baseline, read_views
from runtime.errors import InputError
from runtime.provenance import read_provenance
from slicer.geometry import CaseGeometry
from slicer.manifest import read_manifest
from slicer.writer import read_roi

__all__ = ["VALIDATION_SPLIT", "validation_record", "export_of", "member_leader", "describe_leader"]

VALIDATION_SPLIT = "val"
_SCORES = ("f1", "sensitivity", "precision", "dice")


def export_of(folder: Path) -> Path | None:
    """The export a prediction folder's slices come from: its provenance's ``source`` is
    ``EXPORT/images/<split>`` or a listing in ``EXPORT``; None when it says neither."""
    source = (read_provenance(folder) or {}).get("source")
    if not source:
        return None
    source = Path(source)
    export = source.parent if source.suffix == ".txt" else source.parent.parent
    return export if (export / "manifest.csv").is_file() and (export / "cases").is_dir() else None


def _complete_cases(rows: pd.DataFrame, listing: set[str]) -> list[str]:
    present = (rows["stem"] + ".png").isin(listing)
    complete = present.groupby(rows["case"]).all()
    return sorted(complete.index[complete])


def _case_scores(export: Path, rows: pd.DataFrame, folder: Path, listing: set[str], threshold: float) -> dict:
    """MSSEG-2 scores of one validation case, each plane alone and the model's own vote."""
    geometry = CaseGeometry.load(export / "cases" / f"{rows['case'].iloc[0]}.json")
    masks = read_views(rows, geometry, export / "masks" / VALIDATION_SPLIT)
    reference = np.logical_or.reduce([view > 0.5 for view in masks.values()])
    views = read_views(rows, geometry, folder, listing)
    context = {"spacing": geometry.spacing, "baseline": read_baseline(export, rows, geometry),
               "roi": read_roi(export, geometry)}  # fmt: skip
    fused = {plane: fuse_case([view], "none", None, threshold, **context)[0] for plane, view in views.items()}
    fused["triplanar"] = fuse_case(
        list(views.values()), "triplanar", None, threshold, planes=list(views), **context
    )[0]
    return {view: score_case(reference, mask, (geometry.spacing,) * 3) for view, mask in fused.items()}


def _summary(per_case: list[dict]) -> dict[str, float]:
    table = pd.DataFrame(per_case)
    lesions, empty = table[table["ref_lesions"] > 0], table[table["ref_lesions"] == 0]
    # JSON has no NaN: a score without a case to average over is null.
    summary = {key: round(float(lesions[key].mean()), 4) if len(lesions) else None for key in _SCORES}
    summary["fp_lesions_per_empty_case"] = round(float(empty["fp_lesions"].mean()), 4) if len(empty) else 0.0
    return summary


def validation_record(export: Path, folder: Path, threshold: float) -> dict[str, Any] | None:
    """The record of the prediction ``folder`` on ``export``'s validation cases it predicted
    whole; None when it holds none of them.

    ``threshold`` is the model's operating point (the folder's provenance says it).
    """
    manifest = read_manifest(export / "manifest.csv")
    rows = manifest[manifest["split"] == VALIDATION_SPLIT]
    listing = set(os.listdir(folder))
    cases = _complete_cases(rows, listing)
    if not cases:
        return None
    per_case = [
        _case_scores(export, rows[rows["case"] == case], folder, listing, threshold) for case in cases
    ]
    views: Mapping[str, Any] = {view: _summary([scores[view] for scores in per_case]) for view in per_case[0]}
    return {"split": VALIDATION_SPLIT, "cases": cases, "threshold": threshold, "views": dict(views)}


def _same_model(folder: Path, weights_sha256: str | None) -> None:
    """Refuse a validation folder that another model predicted."""
    made_by = (read_provenance(folder) or {}).get("weights_sha256")
    if weights_sha256 and made_by and made_by != weights_sha256:
        raise InputError(folder, "was predicted by other weights than the model it should vouch for")


def member_leader(
    folders: Sequence[Path], thresholds: Sequence[float], weights_sha256: Sequence[str | None]
) -> tuple[int | None, list[dict[str, Any] | None]]:
    """The ``lead`` rule's leader of an ensemble, from one validation folder per model, and the records.

    Args:
        folders: each model's predictions of (some of) its export's validation cases.
        thresholds: each model's operating point, as the fusion uses it.
        weights_sha256: each model's weights (None: not known), to refuse a folder of another model.

    The leader is None when a model has no record (a folder without validation case, an nnU-Net folder).
    """
    records = []
    for folder, threshold, sha in zip(folders, thresholds, weights_sha256, strict=True):
        _same_model(folder, sha)
        export = export_of(folder)
        records.append(None if export is None else validation_record(export, folder, threshold))
    return leader_of(records), records


def describe_leader(
    leader: int | None, records: Sequence[dict[str, Any] | None], folders: Sequence[Path], tool: str
) -> str:
    """One line: who leads and on what evidence, or why every model votes alike."""
    if leader is None:
        lacking = next(str(f) for f, r in zip(folders, records, strict=True) if member_scores(r) is None)
        return (
            f"{tool}: {lacking} holds no validation case with new lesions to judge its model by: "
            "every model votes alike (triplanar)"
        )
    others = "; ".join(
        f"{folders[i]}: {member_scores(r)['f1']:.3f}, {member_scores(r)['dice']:.3f}"
        for i, r in enumerate(records) if i != leader
    )  # fmt: skip
    best = member_scores(records[leader])
    return (
        f"{tool}: {folders[leader]} leads (validation lesion F1 {best['f1']:.3f}, Dice {best['dice']:.3f} "
        f"on {len(records[leader]['cases'])} cases; {others})"
    )
