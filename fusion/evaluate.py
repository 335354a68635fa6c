"""Scoring a folder of predictions against a dataset's consensus and raters (MSSEG-2 rules).

One case: :func:`evaluate_case` (the prediction against the consensus and every rater, and
every rater against the consensus, so a model stands next to the humans). A folder:
:func:`evaluate`, which writes ``metrics.csv`` (prediction rows, one per case x reference),
``inter_rater.csv`` (rater rows), ``summary.md`` and ``figures/``. The scores themselves
are :mod:`fusion.metrics`.

>>> table = evaluate(EvaluateOptions(pred="seg", dataset="msseg2", out="eval"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from fusion.metrics import Lesions, score_lesions
from slicer.datasets import Case, load_dataset
from slicer.errors import InputError
from slicer.io import atomic_dir, atomic_path, check_same_grid, load_mask, load_nifti, load_volume, spacing_of

__all__ = ["EvaluateOptions", "evaluate_case", "evaluate", "summarise", "summary_line"]

PREDICTION = "prediction"
CONSENSUS = "consensus"
SCORES = ("dice", "f1", "sensitivity", "precision")


@dataclass
class EvaluateOptions:
    """Everything ``lesion-eval`` needs (the CLI fills it from its flags)."""

    pred: Path | str
    dataset: str
    out: Path | str
    root: Path | str | None = None
    registry: Path | str | None = None
    cases: Sequence[str] = field(default_factory=tuple)
    figures: bool = True
    workers: int = 2


def _references(case: Case) -> dict[str, Path]:
    named = {CONSENSUS: case.consensus} if case.consensus is not None else {}
    named.update({f"rater{i}": path for i, path in enumerate(case.raters, start=1)})
    return named


def _load_binary(path: Path) -> tuple[np.ndarray, object]:
    """A binary mask as bool (:func:`slicer.io.load_mask` names any bad value)."""
    data, img = load_mask(path)
    return data > 0, img


def _crop_to_union(masks: list[np.ndarray]) -> tuple[slice, ...]:
    """Bounding box (plus one voxel) of every mask's foreground: components and sizes unchanged."""
    union = np.logical_or.reduce(masks)
    if not union.any():
        return tuple(slice(0, 1) for _ in union.shape)
    spans = [np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    return tuple(slice(max(0, s[0] - 1), s[-1] + 2) for s in spans)


def evaluate_case(case: Case, pred_path: Path, figure_dir: Path | None = None) -> list[dict]:
    """Rows of scores for one case: prediction vs each reference, each rater vs the consensus."""
    prediction_mask, img = _load_binary(pred_path)
    check_same_grid(img, load_nifti(case.t1), pred_path, case.t1)
    spacing = spacing_of(img.affine)
    masks = {
        PREDICTION: prediction_mask,
        **{name: _load_binary(p)[0] for name, p in _references(case).items()},
    }
    box = _crop_to_union(list(masks.values()))  # labelling a sparse crop, not the whole head
    lesions = {name: Lesions.of(mask[box], spacing) for name, mask in masks.items()}
    common = {"case": case.id, "scanner": case.scanner, "split": case.split or "-"}
    pairs = [(PREDICTION, name) for name in masks if name != PREDICTION]
    if CONSENSUS in masks:
        pairs += [(name, CONSENSUS) for name in masks if name not in (PREDICTION, CONSENSUS)]
    rows = []
    for segmentation, reference in pairs:
        scores = score_lesions(lesions[reference], lesions[segmentation], spacing)
        rows.append({**common, "segmentation": segmentation, "reference": reference, **scores})
    if figure_dir is not None:
        from fusion.report import case_figure

        t0 = load_volume(case.t0)[0] if case.t0 is not None else None
        gt = masks.get(CONSENSUS, prediction_mask)
        case_figure(
            load_volume(case.t1)[0],
            t0,
            gt,
            prediction_mask,
            img.affine,
            figure_dir / f"{case.id}.png",
            case.id,
        )
    return rows


def _evaluate_safely(case: Case, pred_path: Path, figure_dir: Path | None) -> list[dict] | tuple[str, str]:
    # InputError does not survive pickling back from a worker: hand its parts back instead.
    try:
        return evaluate_case(case, pred_path, figure_dir)
    except InputError as error:
        return (error.source, error.problem)


def _check_inputs(cases: Sequence[Case], pred_dir: Path) -> list[Path]:
    """Every case has a prediction on its t1 grid and a reference (headers only: cheap)."""
    if not pred_dir.is_dir():
        raise InputError(pred_dir, "prediction folder not found")
    paths = []
    for case in cases:
        path = pred_dir / f"{case.id}.nii.gz"
        if not path.is_file():
            raise InputError(path, f"no prediction for case '{case.id}'")
        if not _references(case):
            raise InputError(case.t1, f"case '{case.id}' has no ground truth to score against")
        check_same_grid(load_nifti(path), load_nifti(case.t1), path, case.t1)
        paths.append(path)
    return paths


def _run(cases: Sequence[Case], paths: Sequence[Path], figure_dir: Path | None, workers: int) -> list[dict]:
    jobs = [(case, path, figure_dir) for case, path in zip(cases, paths, strict=True)]
    progress = {"desc": "evaluating", "unit": "case", "total": len(jobs), "leave": False}
    if workers <= 1:
        results = [_evaluate_safely(*job) for job in tqdm(jobs, **progress)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_evaluate_safely, *zip(*jobs, strict=True)), **progress))
    rows = []
    for result in results:
        if isinstance(result, tuple):
            raise InputError(*result)
        rows.extend(result)
    return rows


def evaluate(options: EvaluateOptions) -> pd.DataFrame:
    """Score ``options.pred``'s ``<case>.nii.gz`` files; write tables and figures under ``options.out``.

    Returns every row (prediction and inter-rater).
    """
    cases = load_dataset(options.dataset, options.root, options.registry)
    if options.cases:
        unknown = sorted(set(options.cases) - {c.id for c in cases})
        if unknown:
            raise InputError("--cases", f"not in dataset '{options.dataset}': {', '.join(unknown)}")
        cases = [c for c in cases if c.id in set(options.cases)]
    paths = _check_inputs(cases, Path(options.pred))
    out = Path(options.out)
    workers = max(1, min(options.workers, len(cases), os.cpu_count() or 1))
    if not options.figures:
        table = pd.DataFrame(_run(cases, paths, None, workers))
    else:
        from fusion.report import score_plot

        with atomic_dir(out / "figures") as figure_dir:
            table = pd.DataFrame(_run(cases, paths, figure_dir, workers))
            score_plot(
                table[(table["segmentation"] == PREDICTION) & (table["reference"] == CONSENSUS)],
                figure_dir / "scores.png",
            )
    _write_table(table[table["segmentation"] == PREDICTION], out / "metrics.csv")
    _write_table(table[table["segmentation"] != PREDICTION], out / "inter_rater.csv")
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(summarise(table, options.dataset))
    return table


def _write_table(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")


def _markdown(table: pd.DataFrame) -> str:
    """A pandas table as a GitHub markdown table (no extra dependency)."""
    cells = [
        [("n/a" if np.isnan(v) else f"{v:.3f}") if isinstance(v, float) else str(v) for v in row]
        for row in table.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + " --- |" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def _aggregate(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean scores over cases with lesions; false positives on cases without."""
    empty = rows["ref_lesions"] == 0
    scores = rows[~empty].groupby(by)[list(SCORES)].mean()  # as the text says: cases with new lesions
    counts = rows.groupby(by).size().rename("cases")
    empties = (
        rows[empty]
        .groupby(by)
        .agg(
            empty_cases=("case", "size"),
            fp_lesions_on_empty=("fp_lesions", "mean"),
            fp_mm3_on_empty=("fp_volume_mm3", "mean"),
        )
    )
    return (
        pd.concat([counts, scores, empties], axis=1)
        .fillna({"empty_cases": 0})
        .astype({"empty_cases": int})
        .reset_index()
    )


def summarise(table: pd.DataFrame, dataset: str = "") -> str:
    """``summary.md``: overall means per reference, per scanner (vs consensus), inter-rater."""
    predicted = table[table["segmentation"] == PREDICTION]
    against_consensus = table[table["reference"] == CONSENSUS]
    parts = [
        f"# Evaluation{f' on {dataset}' if dataset else ''} (MSSEG-2 rules)",
        "Dice, F1, sensitivity and precision are means over cases with new lesions; "
        "false positives (lesions, mm³) are means over cases without.",
        "## Overall (prediction against each reference)",
        _markdown(_aggregate(predicted, ["reference"])),
        "## Per scanner (prediction against the consensus)",
        _markdown(_aggregate(predicted[predicted["reference"] == CONSENSUS], ["scanner"])),
        "## Inter-rater (each rater against the consensus, and the prediction)",
        _markdown(_aggregate(against_consensus, ["segmentation"])),
    ]
    return "\n\n".join(parts) + "\n"


def summary_line(table: pd.DataFrame) -> str:
    """One line: cases, mean Dice and F1 against the consensus, FP lesions on empty cases."""
    rows = table[(table["segmentation"] == PREDICTION) & (table["reference"] == CONSENSUS)]
    if rows.empty:
        rows = table[table["segmentation"] == PREDICTION]
    empty, with_lesions = rows[rows["ref_lesions"] == 0], rows[rows["ref_lesions"] > 0]
    return (
        f"{len(rows)} cases, Dice {with_lesions['dice'].mean():.3f}, F1 {with_lesions['f1'].mean():.3f}, "
        f"{int(empty['fp_lesions'].sum())} FP lesions on {len(empty)} cases without new lesion"
    )
