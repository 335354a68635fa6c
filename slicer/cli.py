"""``slicer`` command line: argument parsing only; the work lives in the library modules.

Heavy imports happen inside each command so that ``slicer --help`` is instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from runtime.arguments import defaults_from, given_arguments
from runtime.cluster import add_cluster_arguments
from runtime.errors import cli_entry

OPTIONS = "slicer.export_options:ExportOptions"  # where the export flags' defaults live

__all__ = ["main", "build_parser"]


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", required=True, help="dataset name in datasets.yaml (msseg2, msseg1, phantom...)"
    )
    parser.add_argument(
        "--root", type=Path, help="dataset root; overrides datasets.yaml and its environment variable"
    )
    parser.add_argument(
        "--registry", type=Path, help="dataset registry YAML (default: ./datasets.yaml or the repository's)"
    )


def _phantom(args: argparse.Namespace) -> None:
    from simulation.phantom import write_phantom

    table = write_phantom(
        args.out,
        cases=args.cases,
        voxel=args.voxel,
        seed=args.seed,
        misalign=args.misalign,
        overwrite=args.overwrite,
        realistic=args.realistic,
        slice_thickness=args.slice_thickness,
    )
    print(
        f"slicer phantom: wrote {len(table)} cases ({int((table['new_lesions'] == 0).sum())} without new lesion) to {args.out}"
    )


def _cases(args: argparse.Namespace) -> None:
    from slicer.summary import case_table

    table = case_table(args.dataset, root=args.root, registry=args.registry)
    print(table.to_string(index=False))
    print(
        f"slicer cases: {len(table)} cases, {int(table['new_lesions'].sum())} new lesions in dataset '{args.dataset}'"
    )


def _export_options(args: argparse.Namespace):  # noqa: ANN202 - ExportOptions, imported lazily
    """The ExportOptions both writers take: every field this command has a flag for."""
    from dataclasses import fields

    from slicer.export import ExportOptions

    names = {f.name for f in fields(ExportOptions)}
    return ExportOptions(**{k: v for k, v in given_arguments(args).items() if k in names})


def _export(args: argparse.Namespace) -> None:
    from runtime.cluster import cluster_options
    from slicer.export import export_dataset

    cluster = cluster_options(args, args.out, "slicer-export")
    print(export_dataset(_export_options(args), cluster.shard, cluster).line())


def _add_preparation_arguments(parser: argparse.ArgumentParser) -> None:
    """What both writers share: how each case is loaded, registered, masked and split."""
    _add_dataset_arguments(parser)
    parser.add_argument("--spacing", type=float, help="isotropic export spacing in mm")
    parser.add_argument(
        "--register", help="t0 to t1: auto (rigid, affine where it fits better), rigid, affine or none"
    )
    parser.add_argument(
        "--brain-mask",
        help="where lesions are looked for: the dataset's brain mask, one computed by deepbet, or "
        "the whole head (auto: the dataset's when it ships one, else computed; dataset, compute, none)",
    )
    parser.add_argument(
        "--match-histograms", action="store_true", help="map t0's histogram onto t1's in the brain"
    )
    parser.add_argument("--label", help="consensus, rater:N or soft")
    parser.add_argument("--val-fraction", type=float, help="share of validation cases")
    parser.add_argument(
        "--split",
        help="put every case in this split (train, val or test; e.g. test for a held-out release) "
        "instead of --val-fraction",
    )
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument(
        "--simulate-evolution", action="store_true", help="pseudo t0 for single-time-point data (MSSEG-1)"
    )


def _add_export_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="write the triplanar 2.5D dataset (TIFF, YOLO labels, masks)", **defaults_from(OPTIONS)
    )
    _add_preparation_arguments(export)
    export.add_argument("--out", type=Path, required=True, help="output folder of the 2D dataset")
    export.add_argument("--name", help="dataset YAML name (default <dataset>_long)")
    export.add_argument("--orientations", nargs="+", help="slice orientations")
    export.add_argument("--recipe", nargs="+", help="channel sources (t1, t0, diff), t1 first")
    export.add_argument("--context", type=int, help="neighbouring slices on each side")
    export.add_argument(
        "--drop-empty-fraction", type=float, help="share of lesion-free training slices left out"
    )
    export.add_argument("--workers", type=int, help="cases exported in parallel")
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="re-export finished cases (default: finished cases made with the same settings are kept, other settings refused)",
    )
    export.add_argument(
        "--cases", nargs="+", help="only these case ids (manifest.csv and the YAML wait for all)"
    )
    add_cluster_arguments(export)
    export.set_defaults(run=_export)


def _export_nnunet(args: argparse.Namespace) -> None:
    from slicer.nnunet import export_nnunet

    print(export_nnunet(_export_options(args), args.id, diff=args.diff).line())


def _add_export_nnunet_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export-nnunet",
        help="write the same prepared cases as an nnU-Net v2 raw dataset (t0, t1 [, diff] as channels)",
        **defaults_from(OPTIONS),
    )
    _add_preparation_arguments(export)
    export.add_argument("--out", type=Path, required=True, help="the nnUNet_raw folder to write into")
    export.add_argument("--id", type=int, required=True, help="nnU-Net dataset id, 1 to 999 (e.g. 501)")
    export.add_argument("--name", help="dataset name: Dataset<id>_<name> (default: --dataset)")
    export.add_argument(
        "--diff", action="store_true", default=False, help="add the t1 - t0 difference as a third channel"
    )
    export.add_argument("--workers", type=int, help="processes of nnU-Net's integrity check")
    export.add_argument("--overwrite", action="store_true", help="replace an existing Dataset<id>_<name>")
    export.set_defaults(run=_export_nnunet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slicer", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)

    phantom = commands.add_parser(
        "phantom", help="write a synthetic longitudinal FLAIR dataset (MSSEG-2 layout)"
    )
    phantom.add_argument("out", type=Path, help="output folder")
    phantom.add_argument("--cases", type=int, default=8, help="number of patients (default 8)")
    phantom.add_argument("--voxel", type=float, default=1.0, help="voxel size in mm (default 1.0)")
    phantom.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    phantom.add_argument("--misalign", action="store_true", help="move t0 by a known rigid transform")
    phantom.add_argument("--overwrite", action="store_true", help="rewrite cases that already exist")
    phantom.add_argument(
        "--realistic",
        action="store_true",
        help="clinical-like: a head, uint16/int16 storage, t0 zero beyond a shorter field of view, ids 013, 015...",
    )
    phantom.add_argument(
        "--slice-thickness",
        type=float,
        metavar="MM",
        help="with --realistic: thick axial slices of MM mm (a whole multiple of --voxel)",
    )
    phantom.set_defaults(run=_phantom)

    cases = commands.add_parser("cases", help="list a dataset's cases: scanner, split, new lesions, voxels")
    _add_dataset_arguments(cases)
    cases.set_defaults(run=_cases)
    _add_export_parser(commands)
    _add_export_nnunet_parser(commands)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
