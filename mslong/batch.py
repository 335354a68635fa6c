"""Many patients at once: ``mslong segment --list pairs.csv --out DIR``.

``pairs.csv`` has the columns ``case,t1,t2`` (baseline and follow-up FLAIR; relative paths
are relative to the CSV's folder). Each model is loaded once; every case gets
``DIR/<case>.nii.gz`` and ``DIR/<case>_lesions.csv``, and ``DIR/summary.csv`` holds one row
per case. ``DIR/provenance.json`` records the weights and settings: a re-run with the same
ones skips finished cases, other ones refuse unless ``overwrite``. With ``--executor`` an
array job's tasks segment shares of the list (:mod:`runtime.cluster`) and this process writes
``summary.csv`` from their rows, in the list's order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mslong.segment import segment_patient
from runtime.cluster import ClusterOptions, Shard, run_array, select_items
from runtime.errors import InputError
from runtime.files import atomic_path, check_not_input, plain_name, sibling_path
from runtime.provenance import claim_folder, file_sha256

__all__ = ["PAIR_COLUMNS", "SUMMARY_COLUMNS", "read_pairs", "segment_list"]

PAIR_COLUMNS = ("case", "t1", "t2")
SUMMARY_COLUMNS = ("case", "new_lesions", "new_lesion_mm3", "new_lesion_voxels", "correlation", "seconds")


def read_pairs(path: str | Path) -> pd.DataFrame:
    """The ``case,t1,t2`` table with absolute paths; every scan must exist and every case be unique."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "pair list not found")
    try:
        pairs = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(path, f"is not a readable CSV ({error})") from None
    missing = [c for c in PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise InputError(
            path, f"lacks the column(s) {', '.join(missing)} (expected {','.join(PAIR_COLUMNS)})"
        )
    if pairs.empty:
        raise InputError(path, "lists no pair")
    repeated = sorted(set(pairs["case"][pairs["case"].duplicated()]))
    if repeated:
        raise InputError(path, f"case ids must be unique (repeated: {', '.join(repeated)})")
    for row, case in enumerate(pairs["case"], start=2):  # row 1 is the header
        plain_name(case, f"{path} row {row}")  # it names the case's output files
    for column in ("t1", "t2"):
        pairs[column] = [p if Path(p).is_absolute() else str(path.parent / p) for p in pairs[column]]
    for case, scan in pairs.melt(id_vars="case", value_vars=["t1", "t2"])[["case", "value"]].itertuples(
        index=False
    ):
        if not Path(scan).is_file():
            raise InputError(path, f"case {case}: {scan} not found")
    return pairs[list(PAIR_COLUMNS)]


def segment_list(
    pairs_csv: str | Path,
    out: str | Path,
    weights: Sequence[Path] = (),
    *,
    device: str | None = None,
    overwrite: bool = False,
    cases: Sequence[str] = (),
    shard: Shard | None = None,
    cluster: ClusterOptions | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Segment every pair of ``pairs_csv`` into ``out``; returns (and writes) the summary table.

    ``options`` are :func:`mslong.segment.segment_patient`'s keywords (vote, threshold, spacing...).
    ``cases`` keeps these pairs, ``shard`` (I, N) the I-th of N shares of them; with
    ``cluster``'s executor its tasks segment the shares, once this run has claimed ``out``.
    Only a run over the whole list writes ``summary.csv`` (a task's rows go to its submitter).
    """
    from mslong.models import load_predictor  # imports torch

    listed, out = read_pairs(pairs_csv), Path(out)
    check_not_input(out / "summary.csv", "--out", (pairs_csv,))
    for case, t1, t2 in listed.itertuples(index=False):
        for target in (out / f"{case}.nii.gz", sibling_path(out / f"{case}.nii.gz", "_lesions.csv")):
            check_not_input(target, "--out", (t1, t2, pairs_csv))
    pairs = select_items(list(listed.itertuples(index=False)), cases, shard, key=lambda pair: pair.case)
    submits = cluster is not None and cluster.submits
    # A submitter only checks the models, on the CPU: its tasks load them on their own devices.
    predictors = [load_predictor(path, device="cpu" if submits else device) for path in weights]
    record = {
        "tool": "mslong segment",
        "weights": [str(path) for path in weights],
        "weights_sha256": [file_sha256(path) for path in weights],
        **{key: value for key, value in sorted(options.items()) if key != "batch"},
    }
    summary = out / "summary.csv"
    with claim_folder(out, record, "*.nii.gz", overwrite) as keep:
        if submits:  # the tasks accept this claim: they make the same record
            settings = dict(pairs_csv=pairs_csv, out=out, weights=weights, device=device, overwrite=overwrite)
            tables = run_array(cluster, segment_list, len(pairs), **settings, cases=tuple(cases), **options)
            rows = [row for table in tables for row in table.to_dict("records")]
        else:
            previous = (
                pd.read_csv(summary, dtype={"case": str}).set_index("case")
                if keep and summary.is_file()
                else None
            )
            rows = [
                _segment_case(case, Path(t1), Path(t2), out, keep, previous, predictors, device, options)
                for case, t1, t2 in pairs
            ]
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    if len(pairs) == len(listed):
        with atomic_path(summary) as tmp:
            table.to_csv(tmp, index=False)
    return table


def _segment_case(
    case: str,
    t1: Path,
    t2: Path,
    out: Path,
    keep: bool,
    previous: pd.DataFrame | None,
    predictors: Sequence,
    device: str | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """One summary row: the previous run's when its files are there, else a fresh segmentation."""
    target = out / f"{case}.nii.gz"
    done = keep and target.is_file() and sibling_path(target, "_lesions.csv").is_file()
    if done and previous is not None and case in previous.index:
        return previous.loc[[case]].reset_index().to_dict("records")[0]  # per column, dtypes kept
    start = time.perf_counter()
    result = segment_patient(t1, t2, target, predictors=predictors, device=device, **options)
    print(f"mslong segment: {case}: {result.new_lesions} new lesions -> {target}")
    return {
        "case": case,
        "new_lesions": result.new_lesions,
        "new_lesion_mm3": result.new_lesion_mm3,
        "new_lesion_voxels": result.new_lesion_voxels,
        "correlation": result.correlation,
        "seconds": time.perf_counter() - start,
    }
