"""Does the triplanar vote beat the best single plane whatever the training seed?

A 6-patient validation split holds about 20 new lesions, so one lesion moves lesion F1 by a few
hundredths and one training run decides little. This trains UNeXt as the demo does with several
seeds and prints, per seed, on the demo's validation patients and on the held-out phantom: the
best single plane, UNeXt triplanar and the UNeXt + YOLO triplanar ensemble (the demo's YOLO).

    python benchmarks/bench_accuracy.py --work demo_output   # first: the demo's models, the held-out phantom
    python benchmarks/bench_vote.py --work demo_output --seeds 0 1 2

The default ``--work`` is bench_accuracy's own, so ``make benchmarks`` runs them in that order.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from fusion.reassemble import ReassembleOptions, reassemble
from mslong.demo import prepare_data, score_folder, train_unext, training_data
from mslong.options import DemoOptions
from unext_long.predict import DECISION_THRESHOLD as UNEXT
from unext_long.predict import predict_folder
from yolo_long.predict import DECISION_THRESHOLD as YOLO

PLANES = ("axial", "coronal", "sagittal")


def _fuse(
    work: Path, folders: list[Path], thresholds: list[float], name: str, planes: tuple[str, ...] = PLANES
) -> Path:
    out = work / "vote_bench" / name
    vote = "triplanar" if len(planes) > 1 else "none"
    reassemble(
        ReassembleOptions(
            slices=work / "export",
            preds=folders,
            out=out,
            vote=vote,
            threshold=thresholds,
            orientations=planes,
            split="val",
            overwrite=True,
        )
    )
    return out


def score_seed(work: Path, weights: Path, name: str, seed: int) -> dict[str, float | str]:
    """Scores of one UNeXt run (predictions in ``work/preds/name``) on ``work``'s validation split."""
    preds = work / "preds"
    unext = preds / name
    predict_folder(weights, work / "export" / "images" / "val", unext, batch=16)
    scores = {}
    for plane in PLANES:
        folder = _fuse(work, [unext], [UNEXT], f"seed{seed}_{plane}", (plane,))
        scores[plane] = score_folder(folder, work / "phantom", folder.with_name(folder.name + "_eval"))
    best = max(PLANES, key=lambda plane: scores[plane]["F1"])
    runs = {
        "UNeXt triplanar": _fuse(work, [unext], [UNEXT], f"seed{seed}_triplanar"),
        "UNeXt + YOLO": _fuse(work, [unext, preds / "yolo"], [UNEXT, YOLO], f"seed{seed}_ensemble"),
    }
    row = {"best plane": best, "plane F1": scores[best]["F1"], "plane Dice": scores[best]["Dice"]}
    for name, folder in runs.items():
        score = score_folder(folder, work / "phantom", folder.with_name(folder.name + "_eval"))
        row |= {f"{name} F1": score["F1"], f"{name} Dice": score["Dice"]}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("benchmarks/output/accuracy"),
        help="a folder bench_accuracy.py has finished (e.g. demo_output)",
    )
    parser.add_argument("--heldout", type=Path, help="held-out work folder (default: WORK/heldout_seed1000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--lesion-fraction",
        type=float,
        default=DemoOptions.unext_lesion_fraction,
        help="share of lesion slices in UNeXt's epochs (default: the demo's)",
    )
    args = parser.parse_args()
    heldout = args.heldout or args.work / "heldout_seed1000"
    if not (heldout / "preds" / "yolo").is_dir() or not (args.work / "preds" / "yolo").is_dir():
        parser.error(
            f"run the demo and bench_accuracy.py --work {args.work} first (YOLO predictions missing)"
        )

    start = time.perf_counter()
    demo = DemoOptions(out=args.work)
    data = training_data(demo, prepare_data(demo))
    rows = {}
    for seed in args.seeds:
        trained = replace(demo, seed=seed, unext_lesion_fraction=args.lesion_fraction)
        name = "unext" if trained == demo else f"unext_seed{seed}_lesions{args.lesion_fraction:g}"
        weights = train_unext(trained, data, args.work / "runs", name)
        rows[(seed, "validation")] = score_seed(args.work, weights, name, seed)
        rows[(seed, "held out")] = score_seed(heldout, weights, name, seed)
    table = pd.DataFrame(rows).T.rename_axis(["seed", "patients"])
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    numeric = table.drop(columns="best plane").astype(float)
    print(
        "\nmean over seeds\n"
        + numeric.groupby(level="patients").mean().to_string(float_format="{:.3f}".format)
    )
    print(f"\nbench_vote: {len(args.seeds)} seeds, lesion fraction {args.lesion_fraction:g}, ", end="")
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
