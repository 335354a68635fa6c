"""Export time of one 1 mm phantom case: registration none or rigid, brain mask shipped or computed;
and how the export scales with cluster workers, one case per worker.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_export.py [--work DIR] [--voxel 1.0]
        [--workers 1 2] [--scaling-only]

Prints a table: registration, brain mask (``dataset``: the phantom's own file; ``compute``:
deepbet; ``none``: the head), seconds, slices, MB written, and for rigid the registration's
own seconds and its mean displacement (mm, over the head) from the phantom's known transform.
Then the scaling table: as many cases as the most workers, exported in this process and by
``--executor local --shards N`` array jobs (submitit subprocesses, each capped to cores / N
threads): wall seconds, seconds per case and speed-up over one worker, task start included.
The phantom cases are generated once under --work (default /tmp/mslong_bench_export) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from runtime.cluster import ClusterOptions
from simulation.phantom import write_phantom
from slicer.export import ExportOptions, export_dataset
from slicer.io import load_volume
from slicer.normalise import head_mask


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _registration(root: Path, out: Path) -> tuple[float, float]:
    """Seconds of the registration and its mean displacement (mm) from the known transform."""
    case = root / "case000"
    info = json.loads((out / "cases" / "case000.json").read_text())["extra"]["registration"]
    truth = np.array(json.loads((case / "misalignment.json").read_text())["t1_to_t0_world"])
    t1, img = load_volume(case / "flair_time02_on_middle_space.nii.gz")
    mask = head_mask(t1)
    points = np.c_[np.argwhere(mask), np.ones(int(mask.sum()))] @ img.affine.T
    error = points @ (np.array(info["t1_to_t0_world"]) - truth).T
    return info["seconds"], float(np.linalg.norm(error[:, :3], axis=1).mean())


def _settings(work: Path, voxel: float) -> None:
    """The registration x brain-mask table of one misaligned case."""
    root = work / f"phantom_{voxel:g}mm"
    write_phantom(root, cases=1, voxel=voxel, seed=0, misalign=True)
    rows = []
    for setting, brain in (("none", "none"), ("none", "dataset"), ("none", "compute"), ("rigid", "dataset")):
        out = work / f"export_{setting}_{brain}"
        shutil.rmtree(out, ignore_errors=True)
        summary = export_dataset(
            ExportOptions(
                dataset="phantom",
                root=root,
                out=out,
                spacing=voxel,
                register=setting,
                brain_mask=brain,
                overwrite=True,
            )  # fmt: skip
        )
        registration = _registration(root, out) if setting == "rigid" and not summary.failed else None
        rows.append((setting, brain, summary, _size_mb(out), registration))
    print(
        f"{'register':<10}{'brain':<9}{'seconds':>9}{'slices':>8}{'MB':>8}{'reg s':>8}{'reg mm':>8}  failed"
    )
    for setting, brain, summary, size, registration in rows:
        reg = f"{registration[0]:>8.1f}{registration[1]:>8.2f}" if registration else f"{'-':>8}{'-':>8}"
        failed = ", ".join(summary.failed) or "-"
        print(f"{setting:<10}{brain:<9}{summary.seconds:>9.1f}{summary.slices:>8}{size:>8.0f}{reg}  {failed}")


def _scaling(work: Path, voxel: float, workers: list[int]) -> None:
    """The same cases, one per worker of the largest count, exported from scratch per line."""
    cases, cores = max(workers), len(os.sched_getaffinity(0))
    root = work / f"phantom_{voxel:g}mm_{cases}cases"
    write_phantom(root, cases=cases, voxel=voxel, seed=0)
    out = work / "export_scaling"
    arrays = [
        ClusterOptions(executor="local", shards=n, logs=work / "submitit", name="bench") for n in workers
    ]
    runs = [("in process", None)] + [(f"local x{c.shards}", c) for c in arrays]
    print(f"\n{cases} cases of {voxel:g} mm, {cores} cores, load {os.getloadavg()[0]:.1f} before")
    print(f"{'run':<12}{'threads':>8}{'seconds':>9}{'s/case':>8}{'speed-up':>9}")
    one_worker = None
    for label, cluster in runs:
        shutil.rmtree(out, ignore_errors=True)
        options = ExportOptions(dataset="phantom", root=root, out=out, spacing=voxel, brain_mask="dataset")
        seconds = export_dataset(options, cluster=cluster).seconds
        if cluster is not None and cluster.shards == 1:
            one_worker = seconds
        speed_up = f"{one_worker / seconds:>9.2f}" if cluster is not None and one_worker else f"{'-':>9}"
        threads = cluster.threads if cluster else cores
        print(f"{label:<12}{threads:>8}{seconds:>9.1f}{seconds / cases:>8.1f}{speed_up}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mslong_bench_export")
    parser.add_argument("--voxel", type=float, default=1.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--scaling-only", action="store_true", help="skip the registration/brain-mask table")
    args = parser.parse_args()
    if not args.scaling_only:
        _settings(args.work, args.voxel)
    _scaling(args.work, args.voxel, sorted(set(args.workers)))


if __name__ == "__main__":
    main()
