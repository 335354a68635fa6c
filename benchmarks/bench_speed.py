"""Where one patient's time goes: ``mslong segment --profile`` on a 1 mm phantom case and a real pair.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_speed.py [--weights UNEXT.pt YOLO.pt] \
        [--real ../shared/data/ljubljana/longitudinal/patient01] [--work DIR] [--repeat 2]

``--weights`` defaults to the two models ``make demo`` trains (``demo_output/runs/*/weights/best.pt``).

Each row runs the command a user runs, as a new process (start-up and imports included), once
to warm the disk cache and then ``--repeat`` times; the table gives the median seconds of every
stage (``runtime.timing``: read, brain mask, registration, resampling, normalisation, each
model, the baseline, fusion, writing) and the wall time the process took. Inputs:

- a 1 mm realistic phantom case (a head, 3 mm-thick t0 field of view: what ``make demo``
  trains on), with the given models and without (the subtraction baseline);
- with ``--real``, a real pair's co-registered scans (0.72 x 0.72 x 3 mm), the same two ways.

The brain mask is computed (deepbet) in every row, as for a user without a mask file.

``--before CHECKOUT`` (a checkout of an earlier commit, e.g. ``git worktree add /tmp/before
HEAD~3``) measures that code too, in the same run and the same conditions: each column runs
before and after in turn, with that checkout first on ``PYTHONPATH``, and the table gains a
``before`` and an ``after`` column per input, and a last row saying whether the two wrote the
same mask voxel for voxel.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from simulation.phantom import write_phantom

MSLONG = str(Path(sys.executable).with_name("mslong"))
DEMO_MODELS = [Path("demo_output/runs/unext/weights/best.pt"), Path("demo_output/runs/yolo/weights/best.pt")]
STAGE_LINE = re.compile(r"^(?P<stage>.+?)\s+(?P<seconds>\d+\.\d)\s+\d+%$")


def run_once(
    t0: Path, t1: Path, out: Path, weights: list[Path], spacing: float | None, code: Path | None = None
) -> dict[str, float]:
    """One ``mslong segment --profile`` process (``code``: a checkout first on its ``PYTHONPATH``):
    its stages' seconds and its wall time."""
    command = [MSLONG, "segment", "-t1", str(t0), "-t2", str(t1), "-o", str(out), "--overwrite", "--profile"]
    command += ["--weights", *map(str, weights)] if weights else []
    command += ["--spacing", str(spacing)] if spacing else []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(code or ""), os.environ.get("PYTHONPATH")])),
    }
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    stages = {
        m["stage"]: float(m["seconds"])
        for line in done.stdout.splitlines()
        if (m := STAGE_LINE.match(line.strip())) and m["stage"] not in ("stage", "total")
    }
    return {**stages, "process wall": time.perf_counter() - start}


def profile(
    t0: Path,
    t1: Path,
    out: Path,
    weights: list[Path],
    spacing: float | None,
    repeat: int,
    code: Path | None = None,
) -> dict:
    run_once(t0, t1, out, weights, spacing, code)  # warm the disk cache and the kernels' first load
    runs = [run_once(t0, t1, out, weights, spacing, code) for _ in range(repeat)]
    return {key: statistics.median(run.get(key, 0.0) for run in runs) for key in runs[0]}


def same_mask(first: Path, second: Path) -> str:
    same = np.array_equal(np.asarray(nib.load(first).dataobj), np.asarray(nib.load(second).dataobj))
    return "yes" if same else "NO"


def phantom_case(work: Path) -> tuple[Path, Path]:
    root = work / "phantom_1mm"
    write_phantom(root, cases=1, voxel=1.0, seed=0, realistic=True)
    case = next(p for p in sorted(root.iterdir()) if p.is_dir())
    return case / "flair_time01_on_middle_space.nii.gz", case / "flair_time02_on_middle_space.nii.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", type=Path, nargs="+", default=DEMO_MODELS, help="trained models (UNeXt, YOLO)"
    )
    parser.add_argument("--real", type=Path, help="a real pair's folder (flair_time0{1,2}_on_middle_space)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mslong_bench_speed"))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--before", type=Path, help="a checkout of earlier code, measured in the same run")
    args = parser.parse_args()
    missing = [str(path) for path in args.weights if not path.exists()]
    if missing:
        parser.error(f"no trained model at {', '.join(missing)}: run make demo first, or give --weights")
    args.work.mkdir(parents=True, exist_ok=True)
    inputs = {"phantom 1 mm": (*phantom_case(args.work), None)}
    if args.real:
        names = ("flair_time01_on_middle_space.nii.gz", "flair_time02_on_middle_space.nii.gz")
        inputs[f"{args.real.name} 3 mm"] = (args.real / names[0], args.real / names[1], None)
    codes = {"before": args.before, "after": None} if args.before else {"": None}
    columns, same = {}, {}
    for name, (t0, t1, spacing) in inputs.items():
        for label, weights in (("baseline", []), (f"{len(args.weights)} models", args.weights)):
            column = f"{name}, {label}"
            outs = {}
            for when, code in codes.items():
                outs[when] = (
                    args.work
                    / f"{column.replace(' ', '_').replace(',', '')}{'_' + when if when else ''}.nii.gz"
                )
                columns[(column, when)] = profile(t0, t1, outs[when], weights, spacing, args.repeat, code)
                print(f"done: {column} {when}: {columns[(column, when)]['process wall']:.1f} s", flush=True)
            if args.before:
                same[(column, "after")] = same_mask(outs["before"], outs["after"])
    table = pd.DataFrame(columns).fillna(0.0)
    wall = table.loc[["process wall"]]
    table = pd.concat([table.drop(index="process wall"), wall]).map(lambda v: f"{v:.1f}")
    if args.before:
        table.loc["same mask as before"] = pd.Series(same)
        table = table.fillna("")
    else:
        table.columns = table.columns.droplevel(1)
    print(table.to_string())


if __name__ == "__main__":
    main()
