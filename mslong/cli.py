"""``mslong`` command line: ``segment`` (one patient) and ``demo`` (the whole pipeline).

Argument parsing only; heavy imports happen inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mslong.options import DemoOptions
from slicer.cluster import add_cluster_arguments, cluster_options
from slicer.errors import InputError, cli_entry

__all__ = ["main", "build_parser"]


def _segment_options(args: argparse.Namespace) -> dict:
    return {
        "vote": args.vote,
        "min_votes": args.min_votes,
        "threshold": args.threshold,
        "keep_existing": args.keep_existing,
        "spacing": args.spacing,
        "register": args.register,
        "brain_mask_mode": args.brain_mask,
        "brain_mask_file": args.brain_mask_file,
        "batch": args.batch,
        "save_prob": args.save_prob,
    }


def _segment(args: argparse.Namespace) -> None:
    import time

    start = time.perf_counter()
    if args.list is not None:
        from mslong.batch import segment_list

        if args.brain_mask_file is not None:
            raise InputError("--brain-mask-file", "serves one patient; with --list masks are computed")
        cluster = cluster_options(args, args.out, "mslong-segment")
        table = segment_list(
            args.list,
            args.out,
            args.weights,
            device=args.device,
            overwrite=args.overwrite,
            cases=args.cases,
            shard=cluster.shard,
            cluster=cluster,
            **_segment_options(args),
        )
        written = args.out / "summary.csv" if cluster.shard is None and not args.cases else args.out
        print(
            f"mslong segment: {len(table)} cases, {int(table['new_lesions'].sum())} new lesions -> "
            f"{written} ({time.perf_counter() - start:.1f} s)"
        )
        return
    from mslong.segment import segment_patient

    result = segment_patient(
        args.time01, args.time02, args.output, args.weights, device=args.device, **_segment_options(args)
    )
    print(
        f"mslong segment: {result.new_lesions} new lesions ({result.new_lesion_voxels} voxels) by "
        f"{' + '.join(result.models)} -> {result.out} ({time.perf_counter() - start:.1f} s)"
    )


def _check_segment_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    one = (args.time01, args.time02, args.output)
    if args.list is not None:
        if any(v is not None for v in one) or args.out is None:
            parser.error("--list takes --out DIR, not -t1/-t2/-o")
    elif None in one or args.out is not None:
        parser.error("give -t1, -t2 and -o (one patient), or --list pairs.csv --out DIR (many)")
    elif hasattr(args, "executor") or hasattr(args, "shard") or args.cases:
        raise InputError("--executor/--shard/--cases", "share out a --list of pairs, not one patient")


def _demo(args: argparse.Namespace) -> None:
    from mslong.demo import run_demo

    run_demo(
        DemoOptions(
            out=args.out,
            cases=args.cases,
            voxel=args.voxel,
            seed=args.seed,
            unext_epochs=args.unext_epochs,
            yolo_epochs=args.yolo_epochs,
            device=args.device,
            overwrite=args.overwrite,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mslong", description="New MS lesion segmentation from two FLAIR scans."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    segment = commands.add_parser(
        "segment",
        help="segment one patient (the MSSEG-2 challenge contract)",
        description="Segment the new lesions of one patient (-t1 baseline, -t2 follow-up, as time "
        "points; -o mask, plus <mask>_lesions.csv), or of many (--list pairs.csv --out DIR).",
    )
    segment.add_argument("-t1", dest="time01", type=Path, help="baseline FLAIR (time point 1)")
    segment.add_argument("-t2", dest="time02", type=Path, help="follow-up FLAIR (time point 2)")
    segment.add_argument("-o", dest="output", type=Path, help="output mask (.nii.gz) on the t2 grid")
    segment.add_argument(
        "--list", type=Path, help="CSV with columns case,t1,t2: segment every pair, loading models once"
    )
    segment.add_argument(
        "--out", type=Path, help="with --list: folder for <case>.nii.gz, <case>_lesions.csv, summary.csv"
    )
    segment.add_argument(
        "--overwrite", action="store_true", help="with --list: redo cases made with other weights or settings"
    )
    segment.add_argument(
        "--weights",
        type=Path,
        nargs="+",
        default=[],
        help="one or more trained models (UNeXt .pt or YOLO best.pt); several form an ensemble. "
        "Without weights the subtraction baseline runs.",
    )
    segment.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    segment.add_argument("--vote", default="triplanar", choices=("none", "mean", "majority", "triplanar"))
    segment.add_argument(
        "--min-votes",
        type=int,
        default=None,
        help="planes that must detect a lesion; the models of one plane merge first (default: 2 of 3)",
    )
    segment.add_argument(
        "--threshold",
        type=float,
        nargs="+",
        default=None,
        help="probability threshold: one value, or one per weights file (default: each model's own, "
        "0.5 for UNeXt, 0.25 for YOLO as in ultralytics)",
    )
    segment.add_argument(
        "--keep-existing",
        action="store_true",
        help="keep lesions already hyperintense at baseline (default: drop them, they are not new)",
    )
    segment.add_argument(
        "--spacing",
        type=float,
        default=None,
        help="isotropic slicing spacing in mm (default: the one the models were trained at, else 1.0)",
    )
    segment.add_argument("--register", default="auto", choices=("auto", "rigid", "affine", "none"))
    segment.add_argument(
        "--brain-mask",
        default=None,
        choices=("auto", "dataset", "compute", "none"),
        help="where lesions are looked for: --brain-mask-file (dataset), a mask computed by deepbet "
        "(compute) or the whole head (none); default: as the models were trained, else auto (the "
        "file when given, else computed)",
    )
    segment.add_argument(
        "--brain-mask-file", type=Path, default=None, help="brain mask on the t2 grid (e.g. the dataset's)"
    )
    segment.add_argument("--batch", type=int, default=16, help="slices per forward pass (default 16)")
    segment.add_argument("--save-prob", action="store_true", help="also write <output>_prob.nii.gz")
    segment.add_argument(
        "--cases", nargs="+", default=[], help="with --list: only these cases (summary.csv waits for all)"
    )
    add_cluster_arguments(segment)
    segment.set_defaults(run=_segment)

    defaults = DemoOptions()
    demo = commands.add_parser(
        "demo", help="run the whole pipeline on a synthetic phantom and print the results"
    )
    demo.add_argument(
        "--out", type=Path, default=defaults.out, help=f"working folder (default {defaults.out})"
    )
    demo.add_argument(
        "--cases", type=int, default=defaults.cases, help=f"phantom patients (default {defaults.cases})"
    )
    demo.add_argument(
        "--voxel",
        type=float,
        default=defaults.voxel,
        help=f"phantom voxel = slicing spacing, mm ({defaults.voxel})",
    )
    demo.add_argument("--seed", type=int, default=defaults.seed)
    demo.add_argument(
        "--unext-epochs", type=int, default=defaults.unext_epochs, help=f"(default {defaults.unext_epochs})"
    )
    demo.add_argument(
        "--yolo-epochs", type=int, default=defaults.yolo_epochs, help=f"(default {defaults.yolo_epochs})"
    )
    demo.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    demo.add_argument("--overwrite", action="store_true", help="redo every step")
    demo.set_defaults(run=_demo)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "segment":
        _check_segment_inputs(parser, args)
    args.run(args)


if __name__ == "__main__":
    main()
