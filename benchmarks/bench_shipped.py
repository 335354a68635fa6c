"""The model that ships with mslong (``--weights shipped``, docs/model.md) beside the baseline.

Three tables, each beside the subtraction baseline (``--weights none``), MSSEG-2 rules:

1. two phantoms no model trained on: the project's held-out phantom (``bench_accuracy.py``'s:
   8 patients, seed 1000, 1.5 mm) and a realistic one with 3 mm axial slices, as the real pairs
   (8 patients, seed 77, ``bench_planes.py``'s); ``fp_lesions`` per case without new lesion;
2. the two real Ljubljana pairs (``--root``), co-registered and raw, scored as
   ``bench_real.py`` scores them. The shipped model trained on transplants into both pairs: it
   saw them, so this table says what it fits, not how it generalises (``bench_real.py --rows
   transplant`` gives the same recipe with each pair left out);
3. ``mslong segment --weights shipped`` on one real pair as a user runs it: process wall seconds
   (imports, brain mask and all).

    python benchmarks/bench_shipped.py --root ../shared/data/ljubljana [--work DIR]

Masks are cached under ``--work``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import bench_planes  # benchmarks/ is on sys.path when this script runs
import bench_real
import pandas as pd

from mslong.models import SHIPPED_MODEL
from runtime.provenance import file_sha256
from simulation.phantom import write_phantom

METHODS = {"shipped model": [SHIPPED_MODEL], "subtraction baseline": []}
PHANTOMS = {
    "held-out phantom, 1.5 mm": {"voxel": 1.5, "seed": 1000},
    "realistic phantom, 3 mm slices": {"voxel": 1.0, "seed": 77, "realistic": True, "slice_thickness": 3.0},
}
TIMED = ("patient01", "co-registered")


def phantom_table(work: Path, cases: int) -> pd.DataFrame:
    records = []
    for title, settings in PHANTOMS.items():
        root = work / f"phantom_{settings['seed']}"
        if not root.is_dir():
            write_phantom(root, cases=cases, **settings)
        for method, weights in METHODS.items():
            out = work / "phantom_masks" / f"{root.name}_{method.replace(' ', '_')}"
            records.append({"data": title, "method": method,
                            **bench_planes.phantom_scores(root, weights, None, out)})  # fmt: skip
    return pd.DataFrame(records).set_index(["data", "method"])


def real_table(root: Path, work: Path) -> pd.DataFrame:
    records = []
    for method, weights in METHODS.items():
        for patient in bench_real.PATIENTS:
            for source in bench_real.INPUTS:
                out = work / "real_masks" / f"{patient}_{source}_{method.replace(' ', '_')}.nii.gz"
                scores = bench_real.score_pair(root / "longitudinal" / patient, source, weights, out, None)
                records.append({"method": method, "patient": patient, "input": source, **scores})
    table = pd.DataFrame(records)
    return table.pivot_table(
        index="method", columns="input", values=bench_planes.SCORES, aggfunc="mean", sort=False
    )


def timed_run(root: Path, work: Path) -> float:
    """Wall seconds of ``mslong segment --weights shipped`` on one real pair, a fresh process."""
    patient, source = TIMED
    t0, t1 = (root / "longitudinal" / patient / name for name in bench_real.INPUTS[source])
    command = [str(Path(sys.executable).with_name("mslong")), "segment", "-t1", str(t0), "-t2", str(t1),
               "-o", str(work / "timed.nii.gz"), "--weights", "shipped", "--overwrite"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the ljubljana folder (longitudinal/)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/output/shipped"))
    parser.add_argument("--cases", type=int, default=8, help="patients of each phantom")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"shipped model: {SHIPPED_MODEL.name}, SHA-256 {file_sha256(SHIPPED_MODEL)}")
    print(f"\n## Phantoms no model trained on ({args.cases} patients each)")
    print(phantom_table(args.work, args.cases).round(3).to_string())
    print(f"\n## Real pairs, mean of {', '.join(bench_real.PATIENTS)} (the shipped model saw both)")
    print(real_table(args.root, args.work).round(3).to_string())
    seconds = timed_run(args.root, args.work)
    print(f"\n`mslong segment --weights shipped` on {' '.join(TIMED)}: {seconds:.1f} s (process wall)")
    print(f"\nbench_shipped: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
