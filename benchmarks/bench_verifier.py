"""The lesion verifier on the demo's phantom, beside the plain subtraction baseline.

A verifier is trained (``mslong train-verifier``'s function) on transplants into the demo
phantom's training cases, its candidate z and threshold chosen on held-out draws of them, and
both it and the plain baseline segment the phantom's validation cases as ``mslong segment``
does; the table is ``make demo``'s (:func:`mslong.demo.score_folder`: MSSEG-2 rules, cases with
lesions for Dice/F1, false lesions per case without). Needs ``make demo`` first.

    python benchmarks/bench_verifier.py --demo demo_output --work benchmarks/output/verifier
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from fusion.verify_train import TrainingPlan, train_from_datasets
from mslong.demo import DATASET, score_folder
from mslong.segment import segment_patient
from slicer.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("demo_output"), help="make demo's folder")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/output/verifier"))
    parser.add_argument("--spacing", type=float, default=1.5, help="the demo's voxel, mm")
    parser.add_argument("--draws", type=int, default=2)
    args = parser.parse_args()
    phantom = args.demo / "phantom"
    cases = load_dataset(DATASET, root=phantom)
    verifier = args.work / "verifier.npz"
    if not verifier.is_file():
        train = tuple(case for case in cases if case.split == "train")
        train_from_datasets(TrainingPlan(train, (), verifier, spacing=args.spacing, draws=args.draws, held_out=1,
                                         cache=args.work / "cache"))  # fmt: skip
    rows = {}
    for name, chosen in (("subtraction baseline", None), ("verified candidates", verifier)):
        folder = args.work / name.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for case in (case for case in cases if case.split == "val"):
            target = folder / f"{case.id}.nii.gz"
            if not target.is_file():
                segment_patient(case.t0, case.t1, target, spacing=args.spacing, verifier=chosen)
        rows[name] = score_folder(folder, phantom, args.work / f"scores_{name.replace(' ', '_')}")
    print(pd.DataFrame(rows).T.round(3).to_string())


if __name__ == "__main__":
    main()
