"""Scoring a folder of predictions against a dataset's consensus and raters (MSSEG-2 rules).

One case: :func:`evaluate_case` (the prediction against the consensus and every rater, and
every rater against the consensus, so a model stands next to the humans). A folder:
:func:`evaluate`, which writes ``metrics.csv`` (prediction rows, one per case x reference),
``inter_rater.csv`` (rater rows), ``lesions.csv`` (one row per reference lesion and per
predicted lesion, for every case x reference), ``summary.md`` (with detection by lesion size)
and ``figures/``. The scores themselves are :mod:`fusion.metrics`.

The phantom's own ground truth, scored as a prediction:

>>> import shutil, tempfile
>>> from simulation.phantom import write_phantom
>>> tmp = tempfile.TemporaryDirectory(); root = Path(tmp.name)
>>> _ = write_phantom(root / "phantom", cases=2, voxel=4.0)  # case001 has no new lesion
>>> (root / "seg").mkdir()
>>> for case in ("case000", "case001"):
...     _ = shutil.copy(root / "phantom" / case / "ground_truth.nii.gz", root / "seg" / f"{case}.nii.gz")
>>> table = evaluate(EvaluateOptions(pred=root / "seg", dataset="phantom", root=root / "phantom",
...                                  out=root / "eval", figures=False, workers=1))
>>> summary_line(table)
'2 cases, Dice 1.000, F1 1.000, 0 FP lesions on 1 cases without new lesion'
>>> sorted(path.name for path in (root / "eval").iterdir())
['inter_rater.csv', 'lesions.csv', 'metrics.csv', 'summary.md']
>>> tmp.cleanup()
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm import tqdm

from fusion.metrics import Lesions, Matching, match_lesions, score_lesions
from runtime.errors import InputError
from runtime.files import atomic_dir, atomic_path
from runtime.lesions import bounding_box
from slicer.datasets import Case, load_dataset
from slicer.io import check_same_grid, load_mask, load_nifti, load_volume

__all__ = [
    "CaseResult",
    "EVALUATION_OUTPUTS",
    "EvaluateOptions",
    "detection_by_size",
    "evaluate_case",
    "evaluate",
    "summarise",
    "summary_line",
]

PREDICTION = "prediction"
CONSENSUS = "consensus"
SCORES = ("dice", "f1", "sensitivity", "precision")
SIZE_EDGES_MM3 = (10.0, 50.0, 200.0)  # bins (0, 10], (10, 50], (50, 200], above
SIZE_BINS = ("≤ 10", "10–50", "50–200", "> 200")
LESION_COLUMNS = [
    "case",
    "reference",
    "kind",
    "lesion",
    "volume_mm3",
    "x_mm",
    "y_mm",
    "z_mm",
    "status",
    "matches",
]


# What lesion-eval writes into its --out folder (an earlier evaluation is replaced only with --overwrite).
EVALUATION_OUTPUTS = ("metrics.csv", "inter_rater.csv", "lesions.csv", "summary.md", "figures")


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
    box = bounding_box(np.logical_or.reduce(masks), margin=1)
    return tuple(slice(int(start), int(stop)) for start, stop in box)


@dataclass(frozen=True)
class CaseResult:
    """What one case adds to the tables: score rows and lesion rows."""

    scores: list[dict]
    lesions: list[dict]


def _partners(overlaps: np.ndarray) -> str:
    """Ids of the other side's lesions sharing voxels with one lesion, largest overlap first."""
    ids = np.flatnonzero(overlaps)
    return " ".join(str(i + 1) for i in ids[np.argsort(-overlaps[ids], kind="stable")])


def _lesion_rows(
    lesions: Lesions,
    found: np.ndarray,
    overlaps: np.ndarray,
    to_world: np.ndarray,
    voxel_mm3: float,
    kind: str,
) -> list[dict]:
    """One row per lesion: id, volume, centroid (world mm), status and the lesions it overlaps.

    ``found`` is the detection test of each lesion, ``overlaps`` its row of the overlap table
    without the background column, ``to_world`` the affine from crop voxels to mm.
    """
    status = ("detected", "missed") if kind == "reference" else ("true positive", "false positive")
    return [
        {
            "kind": kind,
            **record,
            "status": status[0] if found[label - 1] else status[1],
            "matches": _partners(overlaps[label - 1]),
        }
        for label, record in enumerate(lesions.describe(to_world, voxel_mm3), start=1)
    ]


def _pair_rows(
    reference: Lesions, prediction: Lesions, matching: Matching, to_world: np.ndarray, voxel_mm3: float
) -> list[dict]:
    """Lesion rows of the prediction against one reference: the reference's lesions, then its own."""
    shared = matching.table[1:, 1:]
    return _lesion_rows(
        reference, matching.detected, shared, to_world, voxel_mm3, "reference"
    ) + _lesion_rows(prediction, matching.true_positive, shared.T, to_world, voxel_mm3, PREDICTION)


def evaluate_case(case: Case, pred_path: Path, figure_dir: Path | None = None) -> CaseResult:
    """Score rows (prediction vs each reference, each rater vs the consensus) and lesion rows."""
    prediction_mask, img = _load_binary(pred_path)
    check_same_grid(img, load_nifti(case.t1), pred_path, case.t1)
    # Anima (ITK) takes the voxel size from the header's pixdim, not from the affine's columns.
    spacing = np.asarray(img.header.get_zooms()[:3], np.float64)
    voxel_mm3 = float(np.prod(spacing))
    masks = {
        PREDICTION: prediction_mask,
        **{name: _load_binary(p)[0] for name, p in _references(case).items()},
    }
    box = _crop_to_union(list(masks.values()))  # labelling a sparse crop, not the whole head
    to_world = img.affine @ nib.affines.from_matvec(np.eye(3), [s.start for s in box])
    lesions = {name: Lesions.of(mask[box], spacing) for name, mask in masks.items()}
    common = {"case": case.id, "scanner": case.scanner, "split": case.split or "-"}
    pairs = [(PREDICTION, name) for name in masks if name != PREDICTION]
    if CONSENSUS in masks:
        pairs += [(name, CONSENSUS) for name in masks if name not in (PREDICTION, CONSENSUS)]
    rows, lesion_table = [], []
    for segmentation, reference in pairs:
        matching = match_lesions(lesions[reference], lesions[segmentation])
        scores = score_lesions(lesions[reference], lesions[segmentation], spacing, matching)
        rows.append({**common, "segmentation": segmentation, "reference": reference, **scores})
        if segmentation == PREDICTION:
            pair = _pair_rows(lesions[reference], lesions[PREDICTION], matching, to_world, voxel_mm3)
            lesion_table += [{"case": case.id, "reference": reference, **row} for row in pair]
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
    return CaseResult(rows, lesion_table)


def _evaluate_safely(case: Case, pred_path: Path, figure_dir: Path | None) -> CaseResult | tuple[str, str]:
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


def _run(
    cases: Sequence[Case], paths: Sequence[Path], figure_dir: Path | None, workers: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score table and lesion table of every case."""
    jobs = [(case, path, figure_dir) for case, path in zip(cases, paths, strict=True)]
    progress = {"desc": "evaluating", "unit": "case", "total": len(jobs), "leave": False}
    if workers <= 1:
        results = [_evaluate_safely(*job) for job in tqdm(jobs, **progress)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_evaluate_safely, *zip(*jobs, strict=True)), **progress))
    scores, lesions = [], []
    for result in results:
        if isinstance(result, tuple):
            raise InputError(*result)
        scores += result.scores
        lesions += result.lesions
    return pd.DataFrame(scores), pd.DataFrame(lesions, columns=LESION_COLUMNS)


def evaluate(options: EvaluateOptions) -> pd.DataFrame:
    """Score ``options.pred``'s ``<case>.nii.gz`` files; write tables and figures under ``options.out``.

    Returns every score row (prediction and inter-rater); the lesion rows go to ``lesions.csv``.
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
        table, lesions = _run(cases, paths, None, workers)
    else:
        from fusion.report import score_plot

        with atomic_dir(out / "figures") as figure_dir:
            table, lesions = _run(cases, paths, figure_dir, workers)
            score_plot(
                table[(table["segmentation"] == PREDICTION) & (table["reference"] == CONSENSUS)],
                figure_dir / "scores.png",
            )
    _write_table(table[table["segmentation"] == PREDICTION], out / "metrics.csv")
    _write_table(table[table["segmentation"] != PREDICTION], out / "inter_rater.csv")
    _write_table(lesions, out / "lesions.csv")
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(summarise(table, options.dataset, lesions))
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


def detection_by_size(lesions: pd.DataFrame) -> pd.DataFrame:
    """Lesion-wise sensitivity and precision per size bin and reference, pooled over cases.

    Sensitivity: detected reference lesions of that size / reference lesions of that size;
    precision: true-positive predicted lesions of that size / predicted lesions of that size.
    """
    size = pd.Categorical.from_codes(
        np.digitize(lesions["volume_mm3"], SIZE_EDGES_MM3, right=True), SIZE_BINS
    )
    hit = lesions["status"].isin(["detected", "true positive"])
    counts = (
        lesions.assign(size_mm3=size, hit=hit)
        .groupby(["reference", "size_mm3", "kind"], observed=False)["hit"]
        .agg(["size", "sum"])
        .unstack("kind")
        .reindex(columns=pd.MultiIndex.from_product([["size", "sum"], ["reference", "prediction"]]))
        .fillna(0)
        .astype(int)
    )
    ref_lesions, detected = counts[("size", "reference")], counts[("sum", "reference")]
    pred_lesions, true_positives = counts[("size", "prediction")], counts[("sum", "prediction")]
    return pd.DataFrame(
        {
            "ref_lesions": ref_lesions,
            "detected": detected,
            "sensitivity": detected / ref_lesions.where(ref_lesions > 0),
            "pred_lesions": pred_lesions,
            "true_positives": true_positives,
            "precision": true_positives / pred_lesions.where(pred_lesions > 0),
        }
    ).reset_index()


def summarise(table: pd.DataFrame, dataset: str = "", lesions: pd.DataFrame | None = None) -> str:
    """``summary.md``: overall means per reference, per scanner (vs consensus), inter-rater and,
    given the lesion table, detection by lesion size."""
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
    if lesions is not None:
        parts += [
            "## Detection by lesion size (mm³; lesions of every case pooled)",
            "Sensitivity: detected reference lesions of that size over all of them; precision: "
            "predicted lesions of that size that match the reference over all of them.",
            _markdown(detection_by_size(lesions)),
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
