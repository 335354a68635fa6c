"""Export time of one 1 mm phantom case, without and with rigid registration.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_export.py [--work DIR] [--voxel 1.0]

Prints a table: setting, seconds, slices, MB written. The phantom case is generated
once under --work (default /tmp/mslong_bench_export) and reused.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from slicer.export import ExportOptions, export_dataset
from slicer.phantom import write_phantom


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


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
        rows.append((setting, summary.seconds, summary.slices, _size_mb(out), summary.failed))
    print(f"{'register':<10}{'seconds':>9}{'slices':>8}{'MB':>8}  failed")
    for setting, seconds, slices, size, failed in rows:
        print(f"{setting:<10}{seconds:>9.1f}{slices:>8}{size:>8.0f}  {', '.join(failed) or '-'}")


if __name__ == "__main__":
    main()
