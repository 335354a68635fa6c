"""Does the triplanar vote beat the best single plane whatever the training seed?

The demo's 6 validation patients hold 26 new lesions and F1 is averaged per patient, so one
lesion moves the mean F1 by 0.02 to 0.1 and one training run decides little. This trains UNeXt as the demo does with several
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

from mslong.demo import (
    Method,
    folder_name,
    fuse_method,
    prepare_data,
    score_folder,
    train_unext,
    training_data,
)
from mslong.options import DemoOptions
from unext_long.predict import predict_folder

PLANES = ("axial", "coronal", "sagittal")
SINGLE_PLANES = tuple(Method(plane, ("unext",), (plane,), "none") for plane in PLANES)
FUSED = (Method("UNeXt triplanar", ("unext",)), Method("UNeXt + YOLO", ("unext", "yolo")))


def _score(work: Path, method: Method, preds: dict[str, Path], tag: str) -> dict[str, float]:
    out = work / "vote_bench" / f"{tag}_{folder_name(method)}"
    fuse_method(method, work / "export", preds, out, overwrite=True)
    return score_folder(out, work / "phantom", out.with_name(out.name + "_eval"))


def score_seed(work: Path, weights: Path, name: str) -> dict[str, float | str]:
    """Scores of one UNeXt run (predictions in ``work/preds/name``) on ``work``'s validation split."""
    preds = {"unext": work / "preds" / name, "yolo": work / "preds" / "yolo"}
    predict_folder(weights, work / "export" / "images" / "val", preds["unext"], batch=16)
    planes = {method.name: _score(work, method, preds, name) for method in SINGLE_PLANES}
    best = max(planes, key=lambda plane: planes[plane]["F1"])
    row = {"best plane": best, "plane F1": planes[best]["F1"], "plane Dice": planes[best]["Dice"]}
    for method in FUSED:
        score = _score(work, method, preds, name)
        row |= {f"{method.name} F1": score["F1"], f"{method.name} Dice": score["Dice"]}
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
        rows[(seed, "validation")] = score_seed(args.work, weights, name)
        rows[(seed, "held out")] = score_seed(heldout, weights, name)
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
