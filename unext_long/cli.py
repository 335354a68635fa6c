"""``unext-long train|predict``: argument parsing only; the work is in :mod:`unext_long.train`
and :mod:`unext_long.predict` (imported inside the commands so ``--help`` is instant)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from runtime.arguments import defaults_from, given_arguments
from runtime.cluster import add_cluster_arguments, cluster_options
from runtime.errors import cli_entry
from unext_long.options import LOSS_NAMES, MODEL_SIZES, STEMS

__all__ = ["main", "build_parser"]


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train", help="train UNeXt on a slicer export", **defaults_from("unext_long.options:TrainOptions")
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset YAML written by slicer export")
    parser.add_argument("--epochs", type=int, help="passes over the training slices")
    parser.add_argument("--imgsz", type=int, help="side of the square training crops")
    parser.add_argument("--batch", type=int, help="slices per step, in all (split over --gpus)")
    parser.add_argument("--lr", type=float, help="initial AdamW learning rate (cosine decay)")
    parser.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--stem", choices=STEMS, help="two-timepoint stem")
    parser.add_argument("--size", choices=MODEL_SIZES, help="network width")
    parser.add_argument("--loss", choices=LOSS_NAMES, help="training loss")
    parser.add_argument("--lesion-fraction", type=float, help="share of lesion slices drawn per epoch")
    parser.add_argument("--max-slices", type=int, help="use a seeded random subset of each split")
    parser.add_argument("--time-limit", type=float, help="minutes; the schedule is shortened to fit")
    parser.add_argument("--project", type=Path, help="folder of the runs")
    parser.add_argument("--name", help="run folder inside --project")
    parser.add_argument("--resume", action="store_true", help="continue <project>/<name> from last.pt")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--workers", type=int, help="data-loading processes (per GPU)")
    parser.add_argument(
        "--gpus",
        type=int,
        default=1,
        help="train on N GPUs with DDP (runs torchrun; with --device cpu: N CPU ranks; default 1)",
    )


def _add_predict(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict",
        help="write one probability PNG per slice",
        **defaults_from("unext_long.predict:predict_folder"),
    )
    parser.add_argument("--weights", type=Path, required=True, help="best.pt or last.pt")
    parser.add_argument(
        "--source", type=Path, required=True, help="folder of exported .tif slices, or a .txt listing of them"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for <stem>.png predictions")
    parser.add_argument("--batch", type=int, help="slices per forward pass")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--overwrite", action="store_true", help="redo slices that already have a PNG")
    parser.add_argument("--cases", nargs="+", help="only the slices of these case ids")
    add_cluster_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``unext-long`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="unext-long", description="UNeXt with a two-timepoint stem on the slicer's 2D export."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train(commands)
    _add_predict(commands)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``unext-long`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = vars(build_parser().parse_args(argv))
    command = args.pop("command")
    if command == "train":
        gpus = args.pop("gpus")
        # The ranks that torchrun starts see WORLD_SIZE set: they train instead of launching again.
        if gpus > 1 and "WORLD_SIZE" not in os.environ:
            from unext_long.distributed import launch

            sys.exit(launch(gpus, argv))
        from unext_long.options import TrainOptions
        from unext_long.train import train

        train(TrainOptions(**args))
    else:
        from unext_long.predict import predict_folder

        parsed = argparse.Namespace(**args)
        cluster = cluster_options(parsed, args["out"], "unext-long-predict")
        predict_folder(**given_arguments(parsed), shard=cluster.shard, cluster=cluster)


if __name__ == "__main__":
    main()
