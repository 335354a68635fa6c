"""Export time of one 1 mm phantom case: registration none or rigid, brain mask shipped or computed.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_export.py [--work DIR] [--voxel 1.0]

Prints a table: registration, brain mask (``dataset``: the phantom's own file; ``compute``:
deepbet; ``none``: the head), seconds, slices, MB written, and for rigid the registration's
own seconds and its mean displacement (mm, over the head) from the phantom's known transform.
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
    for setting, brain in (("none", "none"), ("none", "dataset"), ("none", "compute"), ("rigid", "dataset")):
        out = args.work / f"export_{setting}_{brain}"
        shutil.rmtree(out, ignore_errors=True)
        summary = export_dataset(
            ExportOptions(
                dataset="phantom",
                root=root,
                out=out,
                spacing=args.voxel,
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


if __name__ == "__main__":
    main()
