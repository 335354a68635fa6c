"""Export time of one 1 mm phantom case, without and with rigid registration.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_export.py [--work DIR] [--voxel 1.0]

Prints a table: setting, seconds, slices, MB written, and for rigid the registration's own
seconds and its mean displacement (mm, over the head) from the phantom's known transform.
The phantom case is generated once under --work (default /tmp/mslong_bench_export) and reused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from slicer.export import ExportOptions, export_dataset
from slicer.io import load_volume
from slicer.normalise import head_mask
from slicer.phantom import write_phantom


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mslong_bench_export")
    parser.add_argument("--voxel", type=float, default=1.0)
    args = parser.parse_args()
    root = args.work / f"phantom_{args.voxel:g}mm"
    write_phantom(root, cases=1, voxel=args.voxel, seed=0, misalign=True)
    rows = []
    for setting in ("none", "rigid"):
        out = args.work / f"export_{setting}"
        shutil.rmtree(out, ignore_errors=True)
        summary = export_dataset(
            ExportOptions(
                dataset="phantom", root=root, out=out, spacing=args.voxel, register=setting, overwrite=True
            )
        )
        registration = _registration(root, out) if setting == "rigid" and not summary.failed else None
        rows.append((setting, summary.seconds, summary.slices, _size_mb(out), summary.failed, registration))
    print(f"{'register':<10}{'seconds':>9}{'slices':>8}{'MB':>8}{'reg s':>8}{'reg mm':>8}  failed")
    for setting, seconds, slices, size, failed, registration in rows:
        reg = f"{registration[0]:>8.1f}{registration[1]:>8.2f}" if registration else f"{'-':>8}{'-':>8}"
        print(f"{setting:<10}{seconds:>9.1f}{slices:>8}{size:>8.0f}{reg}  {', '.join(failed) or '-'}")


if __name__ == "__main__":
    main()
