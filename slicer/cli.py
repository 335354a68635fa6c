"""``slicer`` command line: argument parsing only; the work lives in the library modules.

Heavy imports happen inside each command so that ``slicer --help`` is instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from slicer.errors import cli_entry

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
    from slicer.phantom import write_phantom

    table = write_phantom(
        args.out,
        cases=args.cases,
        voxel=args.voxel,
        seed=args.seed,
        misalign=args.misalign,
        overwrite=args.overwrite,
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
    phantom.set_defaults(run=_phantom)

    cases = commands.add_parser("cases", help="list a dataset's cases: scanner, split, new lesions, voxels")
    _add_dataset_arguments(cases)
    cases.set_defaults(run=_cases)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
