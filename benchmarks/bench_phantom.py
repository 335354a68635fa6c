"""Seconds per phantom case, default and realistic (generation and writing, atlas and head loaded once).

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_phantom.py [--cases 3]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from simulation.phantom import T1_NAME, write_phantom
from simulation.phantom.anatomy import load_atlas
from simulation.phantom.head import load_head_model


def _time_cases(voxel: float, cases: int, out: Path, options: dict[str, object]) -> np.ndarray:
    """Wall and CPU seconds of each case, shape (cases, 2): the CPU time of a single thread
    hardly depends on what else the (shared) machine runs."""
    seconds = []
    for index in range(cases):
        wall, cpu = time.perf_counter(), time.process_time()
        # One case per call (seed = index) so every timing is one full case.
        write_phantom(out / f"seed{index}", cases=1, voxel=voxel, seed=index, **options)
        seconds.append((time.perf_counter() - wall, time.process_time() - cpu))
    return np.array(seconds)


def _runs(args: argparse.Namespace) -> list[tuple[str, float, dict[str, object]]]:
    """(mode, voxel, write_phantom options) of every table row."""
    runs: list[tuple[str, float, dict[str, object]]] = [("default", v, {}) for v in args.voxels]
    runs += [("realistic", v, {"realistic": True}) for v in args.realistic_voxels]
    if args.slice_thickness and args.realistic_voxels:
        options = {"realistic": True, "slice_thickness": args.slice_thickness}
        runs.append((f"realistic, {args.slice_thickness:g} mm slices", args.realistic_voxels[-1], options))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3, help="cases timed per row (default 3)")
    parser.add_argument("--voxels", type=float, nargs="*", default=[1.0, 1.5], help="default mode, mm")
    parser.add_argument(
        "--realistic-voxels", type=float, nargs="*", default=[1.5, 2.0], help="realistic mode, mm"
    )
    parser.add_argument(
        "--slice-thickness",
        type=float,
        default=4.0,
        help="one more realistic row at the last realistic voxel with slices this thick (0: none)",
    )
    args = parser.parse_args()

    start = time.perf_counter()
    load_atlas()
    loaded = time.perf_counter()
    load_head_model()
    print(
        f"atlas load: {loaded - start:.2f} s, head model: {time.perf_counter() - loaded:.2f} s "
        "(once per process)\n"
    )
    print(
        f"{'mode':>24}  {'voxel mm':>8}  {'grid':>13}  {'cases':>5}  {'mean s/case':>11}  "
        f"{'min s':>6}  {'CPU s/case':>10}  {'MB/case':>7}"
    )
    for mode, voxel, options in _runs(args):
        with tempfile.TemporaryDirectory() as tmp:
            seconds = _time_cases(voxel, args.cases, Path(tmp), options)
            files = [p for p in Path(tmp).rglob("*") if p.is_file()]
            megabytes = sum(p.stat().st_size for p in files) / 1e6 / args.cases
            shape = nib.load(next(Path(tmp).rglob(T1_NAME))).shape
        grid = "x".join(map(str, shape))
        print(
            f"{mode:>24}  {voxel:>8.1f}  {grid:>13}  {args.cases:>5}  {seconds[:, 0].mean():>11.2f}  "
            f"{seconds[:, 0].min():>6.2f}  {seconds[:, 1].mean():>10.2f}  {megabytes:>7.1f}"
        )


if __name__ == "__main__":
    main()
