"""``mslong`` command line: ``segment`` (one patient) and ``demo`` (the whole pipeline).

Argument parsing only; heavy imports happen inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from fusion.cli import add_vote_arguments, check_vote_arguments
from mslong.options import DemoOptions
from runtime.arguments import defaults_from
from runtime.cluster import add_cluster_arguments, cluster_options
from runtime.errors import InputError, cli_entry
from runtime.files import check_fresh, check_output, check_writable, same_file, sibling_path
from slicer.io import check_voxel_size

# The subtraction baseline's z threshold: a brightening this many robust deviations above the brain's.
MAX_Z = 50.0

__all__ = ["main", "build_parser"]


# The keywords of mslong.segment.segment_patient that segment's flags fill (the rest keep its defaults).
SEGMENT_KEYWORDS = (
    "device",
    "vote",
    "min_votes",
    "threshold",
    "validation",
    "min_size_mm3",
    "keep_existing",
    "spacing",
    "register",
    "brain_mask_mode",
    "brain_mask_file",
    "batch",
    "orientations",
    "save_prob",
    "baseline_z",
    "verifier",
)


def _segment_options(args: argparse.Namespace) -> dict:
    return {key: getattr(args, key) for key in SEGMENT_KEYWORDS if hasattr(args, key)}


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

    result = segment_patient(args.time01, args.time02, args.output, args.weights, **_segment_options(args))
    wall = time.perf_counter() - start
    print(
        f"mslong segment: {result.new_lesions} new lesions ({result.new_lesion_voxels} voxels) by "
        f"{' + '.join(result.models)} -> {result.out} ({wall:.1f} s)"
    )
    if args.profile:
        from runtime.timing import format_stages

        stages = {**result.seconds, "other (imports)": wall - sum(result.seconds.values())}
        print(format_stages(stages, wall))


def _check_segment_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    one = (args.time01, args.time02, args.output)
    if args.list is not None:
        if any(v is not None for v in one) or args.out is None:
            parser.error("--list takes --out DIR, not -t1/-t2/-o")
        if args.profile:
            raise InputError(
                "--profile", "times one patient; with --list, summary.csv has each case's seconds"
            )
        check_writable(args.out / "summary.csv", "--out")
        return
    if None in one or args.out is not None:
        parser.error("give -t1, -t2 and -o (one patient), or --list pairs.csv --out DIR (many)")
    if hasattr(args, "executor") or hasattr(args, "shard") or args.cases:
        raise InputError("--executor/--shard/--cases", "share out a --list of pairs, not one patient")
    if same_file(args.time01, args.time02):
        raise InputError("-t2", f"{args.time02} is the same file as -t1: a scan has no change against itself")
    verifier = [args.verifier] if hasattr(args, "verifier") else []
    inputs = (args.time01, args.time02, args.brain_mask_file, *args.weights, *verifier)
    check_output(args.output, "-o", inputs, args.overwrite, suffixes=(".nii.gz", ".nii"))
    siblings = [sibling_path(args.output, "_lesions.csv")]
    siblings += [sibling_path(args.output, "_prob.nii.gz")] if getattr(args, "save_prob", False) else []
    check_fresh(siblings, "-o", args.overwrite)


def _check_segment_options(args: argparse.Namespace) -> None:
    """Refuse, before any work, values out of range and options the chosen mode ignores."""
    if hasattr(args, "spacing"):
        check_voxel_size(args.spacing, "--spacing")
    if hasattr(args, "batch") and args.batch < 1:
        raise InputError("--batch", f"must be 1 or more, got {args.batch}")
    if hasattr(args, "baseline_z") and not (math.isfinite(args.baseline_z) and 0 < args.baseline_z <= MAX_Z):
        raise InputError(
            "--baseline-z", f"must be a z-score above 0 and at most {MAX_Z:g}, got {args.baseline_z}"
        )
    if hasattr(args, "validation") and args.weights and len(args.validation) != len(args.weights):
        raise InputError(
            "--validation",
            f"give one folder per weights file ({len(args.weights)}), not {len(args.validation)}",
        )
    if args.weights and hasattr(args, "baseline_z"):
        raise InputError("--baseline-z", "sets the subtraction baseline, which runs only without --weights")
    if hasattr(args, "verifier") and (args.weights or hasattr(args, "baseline_z")):
        raise InputError(
            "--verifier", "checks the baseline's own candidates: give it without --weights, --baseline-z"
        )
    if not args.weights:
        flags = (
            ("threshold", "--threshold"),
            ("min_votes", "--min-votes"),
            ("vote", "--vote"),
            ("validation", "--validation"),
            ("orientations", "--orientations"),
        )
        for dest, flag in flags:
            if hasattr(args, dest):
                raise InputError(
                    flag, "votes the networks' views: give --weights (the baseline takes --baseline-z)"
                )
        mode = getattr(args, "brain_mask_mode", "auto")
        given_mask = mode in ("dataset", "none") or (mode == "auto" and args.brain_mask_file is not None)
        if hasattr(args, "device") and given_mask:
            print("warning: --device has no effect: without --weights only a computed brain mask runs a network",
                  file=sys.stderr)  # fmt: skip


def _train_verifier(args: argparse.Namespace) -> None:
    from fusion.verify_train import TrainingPlan, describe, train_from_datasets
    from slicer.datasets import load_dataset

    pairs = load_dataset(args.pairs, args.pairs_root)
    if args.cases:
        unknown = sorted(set(args.cases) - {case.id for case in pairs})
        if unknown:
            raise InputError("--cases", f"not in {args.pairs}: {', '.join(unknown)}")
        pairs = [case for case in pairs if case.id in args.cases]
    pairs = [case for case in pairs if case.is_longitudinal and case.consensus is not None]
    if not pairs:
        raise InputError("--pairs", f"{args.pairs} holds no case with t0, t1 and a consensus")
    donors = load_dataset(args.donors, args.donors_root) if args.donors else []
    check_output(args.out, "--out", [], args.overwrite, suffixes=(".npz",))
    plan = TrainingPlan(tuple(pairs), tuple(case for case in donors if case.consensus is not None), args.out,
                        args.spacing, args.draws, args.held_out, args.seed, args.cache)  # fmt: skip
    print(describe(train_from_datasets(plan)))
    print(f"mslong train-verifier: -> {args.out}")


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
        **defaults_from("mslong.segment:segment_patient"),
    )
    # One patient or a list: which of these was given decides (_check_segment_inputs).
    inputs = functools.partial(segment.add_argument, type=Path, default=None)
    inputs("-t1", dest="time01", help="baseline FLAIR (time point 1)")
    inputs("-t2", dest="time02", help="follow-up FLAIR (time point 2)")
    inputs("-o", dest="output", help="output mask (.nii.gz) on the t2 grid")
    inputs("--list", help="CSV with columns case,t1,t2: segment every pair, loading models once")
    inputs("--out", help="with --list: folder for <case>.nii.gz, <case>_lesions.csv, summary.csv")
    segment.add_argument(
        "--overwrite",
        action="store_true",
        default=False,
        help="replace an existing -o mask (refused otherwise); with --list: redo cases made with other "
        "weights or settings (finished cases made with the same ones are kept)",
    )
    segment.add_argument(
        "--weights",
        nargs="+",
        default=(),
        help="one or more trained models (UNeXt .pt, YOLO best.pt, an nnU-Net model folder); several "
        "form an ensemble; 'shipped' is the model that comes with mslong (docs/model.md). Without "
        "weights (or with 'none') the subtraction baseline runs.",
    )
    segment.add_argument(
        "--verifier",
        type=Path,
        help="without --weights: the baseline proposes candidates at a low z and this lesion verifier "
        "('mslong train-verifier') accepts or rejects each (docs/verifier.md)",
    )
    segment.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    add_vote_arguments(segment, "weights file")
    segment.add_argument(
        "--spacing",
        type=float,
        help="isotropic slicing spacing in mm (default: the one the models were trained at, else 1.0)",
    )
    segment.add_argument("--register", choices=("auto", "rigid", "affine", "none"), help="t0 to t1")
    segment.add_argument(
        "--brain-mask",
        dest="brain_mask_mode",
        choices=("auto", "dataset", "compute", "none"),
        help="where lesions are looked for: --brain-mask-file (dataset), a mask computed by deepbet "
        "(compute) or the whole head (none); default: as the models were trained, else auto (the "
        "file when given, else computed)",
    )
    segment.add_argument(
        "--brain-mask-file", type=Path, default=None, help="brain mask on the t2 grid (e.g. the dataset's)"
    )
    segment.add_argument("--batch", type=int, help="slices per forward pass")
    segment.add_argument("--save-prob", action="store_true", help="also write <output>_prob.nii.gz")
    segment.add_argument(
        "--baseline-z",
        type=float,
        metavar="Z",
        help="without weights: the subtraction baseline's threshold on the z-score of the brightening",
    )
    segment.add_argument(
        "--cases", nargs="+", default=(), help="with --list: only these cases (summary.csv waits for all)"
    )
    segment.add_argument(
        "--profile", action="store_true", default=False, help="print the seconds of each stage (one patient)"
    )
    add_cluster_arguments(segment)
    segment.set_defaults(run=_segment)

    _add_train_verifier(commands)
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


def _add_train_verifier(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train-verifier",
        help="train the lesion verifier on real pairs with transplanted lesions (docs/verifier.md)",
    )
    train.add_argument(
        "--pairs", required=True, help="longitudinal dataset of datasets.yaml (t0, t1, consensus)"
    )
    train.add_argument("--pairs-root", type=Path, help="its root folder")
    train.add_argument("--cases", nargs="+", default=(), help="only these cases of --pairs")
    train.add_argument(
        "--donors", help="single-time-point dataset whose consensus lesions are transplanted too"
    )
    train.add_argument("--donors-root", type=Path, help="its root folder")
    train.add_argument("--out", type=Path, required=True, help="the verifier file to write (.npz)")
    train.add_argument("--spacing", type=float, default=1.0, help="export spacing, mm (default 1.0)")
    train.add_argument(
        "--draws", type=_positive, default=8, help="transplanted draws per pair that train (8)"
    )
    train.add_argument(
        "--held-out", type=_positive, default=2, help="draws per pair that pick the threshold (2)"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--cache", type=Path, help="folder of cached candidates, reused by later runs")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    train.set_defaults(run=_train_verifier)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


@cli_entry
def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "segment":
        from mslong.models import resolve_weights

        args.weights = resolve_weights(args.weights)
        check_vote_arguments(parser, args)
        _check_segment_options(args)
        _check_segment_inputs(parser, args)
    args.run(args)


if __name__ == "__main__":
    main()
