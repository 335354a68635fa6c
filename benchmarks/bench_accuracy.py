"""Accuracy of every method on phantoms: the demo's validation split, then a held-out phantom.

Prints two tables (Dice, lesion F1, sensitivity, precision, false-positive lesions per case
without new lesion, against the consensus, MSSEG-2 rules):

1. *fixed seed*: the ``mslong demo`` pipeline on ``--cases`` patients (seed ``--seed``),
   scored on its ``--val-cases`` validation patients;
2. *held out*: the same trained models on ``--heldout-cases`` new patients drawn with another
   seed, hence another mix of subjects, lesions and scanners, that no model trained on.

Goals for the triplanar ensemble on held-out cases: Dice >= 0.75, F1 >= 0.85, <= 0.3
false-positive lesions per case without new lesion.

    python benchmarks/bench_accuracy.py                        # train as the demo does, then score
    python benchmarks/bench_accuracy.py --work demo_output     # reuse a finished demo's models
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from mslong.demo import format_report, prepare_data, score_methods, train_models
from mslong.options import DemoOptions


def main() -> None:
    defaults = DemoOptions()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=Path("benchmarks/output/accuracy"), help="working folder"
    )
    parser.add_argument("--cases", type=int, default=defaults.cases)
    parser.add_argument("--val-cases", type=int, default=defaults.val_cases)
    parser.add_argument("--voxel", type=float, default=defaults.voxel)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--unext-epochs", type=int, default=defaults.unext_epochs)
    parser.add_argument("--yolo-epochs", type=int, default=defaults.yolo_epochs)
    parser.add_argument("--heldout-cases", type=int, default=8)
    parser.add_argument("--heldout-seed", type=int, default=1000)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    fixed = DemoOptions(
        out=args.work,
        cases=args.cases,
        val_cases=args.val_cases,
        voxel=args.voxel,
        seed=args.seed,
        unext_epochs=args.unext_epochs,
        yolo_epochs=args.yolo_epochs,
        device=args.device,
    )
    weights = train_models(fixed, prepare_data(fixed))
    tables = {
        f"fixed seed {args.seed}: {args.val_cases} validation patients of {args.cases}": score_methods(
            fixed, weights
        )
    }

    heldout = replace(
        fixed,
        out=args.work / f"heldout_seed{args.heldout_seed}",
        cases=args.heldout_cases,
        val_cases=args.heldout_cases,
        seed=args.heldout_seed,
    )
    prepare_data(heldout)
    tables[f"held out: {args.heldout_cases} new patients, seed {args.heldout_seed}"] = score_methods(
        heldout, weights
    )

    for title, table in tables.items():
        print(
            f"\n## {title} ({args.voxel} mm, CPU training: UNeXt {args.unext_epochs} / YOLO {args.yolo_epochs} epochs)"
        )
        print(format_report(table))
    print(f"\nbench_accuracy: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
