"""The command lines take their defaults from the options they fill (runtime.arguments)."""

from __future__ import annotations

from pathlib import Path

from fusion.cli import evaluate_parser, reassemble_parser
from fusion.evaluate import EvaluateOptions
from fusion.reassemble import ReassembleOptions
from mslong.cli import _segment_options
from mslong.cli import build_parser as mslong_parser
from runtime.cluster import CLUSTER_DESTS, ClusterOptions, cluster_options
from slicer.cli import _export_options
from slicer.cli import build_parser as slicer_parser
from slicer.export_options import ExportOptions
from unext_long.cli import build_parser as unext_parser
from unext_long.options import TrainOptions


def test_unset_flags_leave_the_options_defaults() -> None:
    train = vars(unext_parser().parse_args(["train", "--data", "d.yaml"]))
    assert {k: v for k, v in train.items() if k not in ("command", "gpus")} == {"data": Path("d.yaml")}
    export = slicer_parser().parse_args(["export", "--dataset", "phantom", "--out", "o"])
    assert _export_options(export) == ExportOptions(dataset="phantom", out=Path("o"))
    evaluate = evaluate_parser().parse_args(["--pred", "p", "--dataset", "phantom", "--out", "o"])
    assert EvaluateOptions(**vars(evaluate)) == EvaluateOptions(
        pred=Path("p"), dataset="phantom", out=Path("o")
    )
    reassemble = vars(reassemble_parser().parse_args(["--slices", "s", "--preds", "p", "--out", "o"]))
    assert set(reassemble) == {"slices", "preds", "out"}
    assert cluster_options(export, "o", "job") == ClusterOptions(logs=Path("o/.submitit"), name="job")
    assert not set(CLUSTER_DESTS) & set(vars(export))
    segment = mslong_parser().parse_args(["segment", "-t1", "a.nii.gz", "-t2", "b.nii.gz", "-o", "c.nii.gz"])
    assert _segment_options(segment) == {"brain_mask_file": None}


def test_given_flags_reach_the_options() -> None:
    args = ["train", "--data", "d.yaml", "--epochs", "3", "--stem", "siamese", "--resume"]
    train = TrainOptions(
        **{k: v for k, v in vars(unext_parser().parse_args(args)).items() if k not in ("command", "gpus")}
    )
    assert (train.epochs, train.stem, train.resume, train.batch) == (3, "siamese", True, TrainOptions.batch)
    export = slicer_parser().parse_args(
        ["export", "--dataset", "p", "--out", "o", "--orientations", "axial", "--shards", "3"]
    )
    assert _export_options(export).orientations == ("axial",)
    segment = mslong_parser().parse_args(
        ["segment", "-t1", "a", "-t2", "b", "-o", "c", "--baseline-z", "4", "--min-size", "5"]
    )
    assert _segment_options(segment) == {"baseline_z": 4.0, "min_size_mm3": 5.0, "brain_mask_file": None}
    assert cluster_options(export, "o", "job").shards == 3


def test_help_prints_the_library_defaults() -> None:
    commands = unext_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them there
    text = " ".join(commands["train"].format_help().split())
    assert f"(default: {TrainOptions.epochs})" in text and f"(default: {TrainOptions.project})" in text
    text = " ".join(reassemble_parser().format_help().split())
    assert f"the rule before) (default: {ReassembleOptions.vote})" in text
