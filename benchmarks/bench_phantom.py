"""Seconds per phantom case at 1.0 mm and 1.5 mm (generation and writing, atlas loaded once).

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_phantom.py [--cases 3]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from slicer.anatomy import load_atlas
from slicer.phantom import write_phantom


def _time_cases(voxel: float, cases: int, out: Path) -> list[float]:
    seconds = []
    for index in range(cases):
        start = time.perf_counter()
        # One case per call (seed = index) so every timing is one full case.
        write_phantom(out / f"seed{index}", cases=1, voxel=voxel, seed=index)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3, help="cases timed per voxel size (default 3)")
    parser.add_argument("--voxels", type=float, nargs="+", default=[1.0, 1.5], help="voxel sizes in mm")
    args = parser.parse_args()

    start = time.perf_counter()
    load_atlas()
    print(f"atlas load (once per process): {time.perf_counter() - start:.2f} s\n")
    print(f"{'voxel mm':>8}  {'grid':>13}  {'cases':>5}  {'mean s/case':>11}  {'min s':>6}  {'MB/case':>7}")
    for voxel in args.voxels:
        with tempfile.TemporaryDirectory() as tmp:
            seconds = _time_cases(voxel, args.cases, Path(tmp))
            files = [p for p in Path(tmp).rglob("*") if p.is_file()]
            megabytes = sum(p.stat().st_size for p in files) / 1e6 / args.cases
            shape = nib.load(next(Path(tmp).rglob("flair_time02*"))).shape
        grid = "x".join(map(str, shape))
        print(
            f"{voxel:>8.1f}  {grid:>13}  {args.cases:>5}  {np.mean(seconds):>11.2f}  "
            f"{np.min(seconds):>6.2f}  {megabytes:>7.1f}"
        )


if __name__ == "__main__":
    main()
