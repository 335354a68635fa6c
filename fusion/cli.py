"""``reassemble`` and ``lesion-eval`` command lines: argument parsing only.

The work lives in :mod:`fusion.reassemble` and :mod:`fusion.evaluate`, imported inside each
command so that ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from fusion.ensemble import FUSION_RULES
from fusion.voting import COUNTING_VOTES, MAX_VOTERS
from runtime.arguments import defaults_from, given_arguments
from runtime.cluster import add_cluster_arguments, cluster_options
from runtime.errors import cli_entry
from runtime.files import check_fresh, check_not_input
from runtime.provenance import read_provenance
from slicer.datasets import SPLITS
from slicer.geometry import ORIENTATIONS

__all__ = [
    "reassemble_main",
    "evaluate_main",
    "reassemble_parser",
    "evaluate_parser",
    "add_vote_arguments",
    "check_vote_arguments",
]


def add_vote_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    """How views become lesions, for ``reassemble`` and ``mslong segment`` alike (``model``: what
    one threshold per model is given for). Check the values with :func:`check_vote_arguments`."""
    parser.add_argument(
        "--vote",
        choices=FUSION_RULES,
        help="fusion rule (default lead: the model with the best validation record fuses alone, by its "
        "own vote; triplanar: every model alike, the rule before)",
    )
    parser.add_argument(
        "--validation",
        type=Path,
        nargs="+",
        help=f"lead rule: one prediction folder per {model}, the same model's predictions of its export's "
        "validation cases (default for reassemble: the --preds folders)",
    )
    parser.add_argument(
        "--min-votes",
        type=int,
        help="planes that must detect a lesion; the models of one plane merge first (default: 2 of 3)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        nargs="+",
        help=f"probability a view must exceed: one value, or one per {model} (default: each model's "
        "own operating point, from its checkpoint or provenance.json: UNeXt 0.5, YOLO 0.25)",
    )
    parser.add_argument(
        "--min-size",
        dest="min_size_mm3",
        metavar="MM3",
        type=float,
        help="drop lesions of this many mm³ or less",
    )
    parser.add_argument(
        "--orientations",
        nargs="+",
        choices=ORIENTATIONS,
        help="planes whose slices become views (default: all three, or those the model was trained on); "
        "e.g. axial, a thick axial scan's acquisition plane",
    )
    parser.add_argument(
        "--keep-existing",
        action="store_true",
        help="keep lesions already hyperintense at baseline (default: drop them, they are not new)",
    )


def check_vote_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit 2 with argparse's one line for a threshold outside [0, 1), a vote count outside 1 to
    the planes that can vote, a vote count where the vote counts none, or a negative size.

    (Where the planes are known, :func:`fusion.voting.check_min_votes` checks the count again.)
    """
    for threshold in getattr(args, "threshold", ()):
        if not 0.0 <= threshold < 1.0:
            parser.error(f"--threshold must be in [0, 1), got {threshold}")
    if hasattr(args, "min_votes"):
        if not 1 <= args.min_votes <= MAX_VOTERS:
            parser.error(
                f"--min-votes must be 1 to {MAX_VOTERS} (three planes and a 3D model), got {args.min_votes}"
            )
        if getattr(args, "vote", "triplanar") not in COUNTING_VOTES:
            parser.error(
                f"--min-votes counts nothing with --vote {args.vote} (use {' or '.join(COUNTING_VOTES)})"
            )
    size = getattr(args, "min_size_mm3", 0.0)
    if not (math.isfinite(size) and size >= 0):
        parser.error(f"--min-size must be a finite volume of 0 mm³ or more, got {size}")


def reassemble_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reassemble",
        description="Stack per-slice probability PNGs back into 3D, vote across planes and write "
        "<case>.nii.gz (binary new-lesion mask) in each case's original t1 grid.",
        **defaults_from("fusion.reassemble:ReassembleOptions"),
    )
    parser.add_argument("--slices", type=Path, required=True, help="the slicer export (manifest.csv, cases/)")
    parser.add_argument(
        "--preds", type=Path, nargs="+", required=True, help="prediction folder(s) of <stem>.png (prob*255)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    add_vote_arguments(parser, "--preds folder")
    parser.add_argument("--save-prob", action="store_true", help="also write <case>_prob.nii.gz (float32)")
    parser.add_argument("--cases", nargs="+", help="only these case ids")
    parser.add_argument("--split", choices=SPLITS, help="only the cases of this split")
    parser.add_argument(
        "--device", help="where an nnU-Net model folder among --preds runs (default: cuda if any)"
    )
    parser.add_argument(
        "--fill-missing",
        action="store_true",
        help="read slices a prediction folder lacks as background (default: refuse an incomplete folder)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="redo cases made with other predictions or settings (finished cases made with the same ones are kept)",
    )
    add_cluster_arguments(parser)
    return parser


def evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesion-eval",
        description="Score <case>.nii.gz predictions by the MSSEG-2 rules against a dataset's "
        "consensus and raters; write metrics.csv, inter_rater.csv, lesions.csv, summary.md and figures.",
        **defaults_from("fusion.evaluate:EvaluateOptions"),
    )
    parser.add_argument("--pred", type=Path, required=True, help="folder of <case>.nii.gz predictions")
    parser.add_argument("--dataset", required=True, help="dataset name in datasets.yaml (msseg2, phantom...)")
    parser.add_argument("--root", type=Path, help="dataset root; overrides datasets.yaml")
    parser.add_argument("--registry", type=Path, help="dataset registry YAML")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--cases", nargs="+", help="only these case ids")
    parser.add_argument(
        "--no-figures", dest="figures", action="store_false", help="skip the per-case figures"
    )
    parser.add_argument("--workers", type=int, help="processes")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation in --out")
    return parser


@cli_entry
def reassemble_main(argv: Sequence[str] | None = None) -> None:
    parser = reassemble_parser()
    args = parser.parse_args(argv)
    check_vote_arguments(parser, args)
    from fusion.reassemble import ReassembleOptions, reassemble

    options = ReassembleOptions(**given_arguments(args))
    cluster = cluster_options(args, args.out, "reassemble")
    written = reassemble(options, cluster.shard, cluster)
    views = f"{len(options.preds)} folder(s) x {len(options.orientations)} plane(s)"
    vote = (read_provenance(options.out) or {}).get("vote", options.vote)  # lead may fall back to triplanar
    print(f"reassemble: wrote {len(written)} case(s) ({vote} vote over {views}) to {options.out}")


@cli_entry
def evaluate_main(argv: Sequence[str] | None = None) -> None:
    parser = evaluate_parser()
    args = parser.parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        parser.error(f"--workers must be 1 or more, got {args.workers}")
    from fusion.evaluate import EVALUATION_OUTPUTS, EvaluateOptions, evaluate, summary_line

    check_not_input(args.out, "--out", (args.pred,))
    check_fresh([args.out / name for name in EVALUATION_OUTPUTS], "--out", getattr(args, "overwrite", False))
    table = evaluate(EvaluateOptions(**given_arguments(args, "overwrite")))
    print(f"lesion-eval: {summary_line(table)}; wrote metrics.csv, lesions.csv, summary.md to {args.out}")
