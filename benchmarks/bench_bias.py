"""Bias field correction on the real pairs: N4 against today's smooth-ratio matching alone.

What it measures: the subtraction baseline (``mslong segment`` without weights, brain mask by
deepbet, old lesions dropped, 1 mm) on the two real longitudinal pairs of the Ljubljana
database (``ROOT/longitudinal/patient01``, ``patient12``), from the co-registered and the raw
inputs, scored exactly as ``benchmarks/bench_real.py`` scores its baseline row
(:func:`bench_real.score_pair`: MSSEG-2 rules against ``ground_truth.nii.gz`` in the common
space), once per ``bias_correction`` of :func:`slicer.prepare.prepare_case`:

- ``none``: today's normalisation (robust rescale, then t0 matched to t1 by their smooth local
  intensity ratio, :func:`slicer.normalise.match_local_intensity`);
- ``n4``: each scan's own bias field removed first by N4 (:func:`slicer.normalise.n4_correct`,
  fitted in the brain both scans acquired, shrunk), then the same normalisation.

The table gives Dice, lesion F1, sensitivity, precision and false-positive lesions per pair,
input and correction, their mean over the two pairs, and N4's extra seconds per scan (its
``bias correction`` stage over the pair, halved).

    python benchmarks/bench_bias.py --root ../shared/data/ljubljana --work /tmp/bench_bias

The figures and why N4 loses are in docs/results.md ("Bias field: N4").

On the project's two shared cores, run it lean: ``OMP_NUM_THREADS=1
ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1`` (ITK, thus N4, ignores ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import bench_real  # benchmarks/ is on sys.path when this script runs
import pandas as pd

from mslong.segment import segment_patient
from slicer.prepare import BIAS_CORRECTIONS

METRICS = ("dice", "f1", "sensitivity", "precision", "fp_lesions")


def run_pair(patient: Path, source: str, correction: str, work: Path, spacing: float) -> dict:
    """Segment one pair from one input with ``correction`` and score it; N4's seconds per scan."""
    t0, t1 = (patient / name for name in bench_real.INPUTS[source])
    out = work / correction / source / f"{patient.name}.nii.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = segment_patient(t0, t1, out, [], spacing=spacing, bias_correction=correction)
    scores = bench_real.score_pair(patient, source, [], out, spacing)  # scores ``out``, already there
    return {
        "pair": patient.name,
        "input": source,
        "correction": correction,
        **{metric: scores[metric] for metric in METRICS},
        "n4_s_per_scan": result.seconds.get("bias correction", 0.0) / 2,
        "total_s": sum(result.seconds.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the Ljubljana folder (holds longitudinal/)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/output/bias"))
    parser.add_argument("--spacing", type=float, default=1.0, help="segmentation spacing, mm")
    parser.add_argument("--patients", nargs="+", default=list(bench_real.PATIENTS))
    parser.add_argument("--inputs", nargs="+", default=list(bench_real.INPUTS), choices=bench_real.INPUTS)
    parser.add_argument("--corrections", nargs="+", default=list(BIAS_CORRECTIONS), choices=BIAS_CORRECTIONS)
    args = parser.parse_args()
    inputs = [
        (source, args.root / "longitudinal" / patient) for source in args.inputs for patient in args.patients
    ]
    rows = []
    for source, patient in inputs:
        for correction in args.corrections:
            rows.append(run_pair(patient, source, correction, args.work, args.spacing))
            line = pd.DataFrame(rows[-1:]).round(3).to_string(index=False, header=len(rows) == 1)
            print(line, flush=True)
    table = pd.DataFrame(rows)
    mean = table.groupby(["input", "correction"], sort=False).mean(numeric_only=True).reset_index()
    table = pd.concat([table, mean.assign(pair="mean")], ignore_index=True)
    print()
    print(table.round(3).to_string(index=False))
    table.to_csv(args.work / "bias.csv", index=False)


if __name__ == "__main__":
    main()
