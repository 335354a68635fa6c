"""Timing of fusion: reassemble + vote + write one 1 mm case; evaluate 100 1 mm-sized cases.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_fusion.py [--cases 100] [--workers 2]``.
The reassembly uses the real pipeline: a 1 mm phantom case exported by ``slicer.export``
whose own mask PNGs stand in for a network's predictions; the old-lesion rule reads the
case's t0 and t1 channels back from its exported slices. The evaluation uses synthetic
volumes of the phantom's 1 mm size (197x233x189) in the MSSEG-2 layout, four raters each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from fusion.evaluate import EvaluateOptions, evaluate
from fusion.reassemble import ReassembleOptions, reassemble

SHAPE = (197, 233, 189)
LAYOUT = """datasets:
  bench:
    root: {root}
    t0: "{{case}}/flair_time01_on_middle_space.nii.gz"
    t1: "{{case}}/flair_time02_on_middle_space.nii.gz"
    consensus: "{{case}}/ground_truth.nii.gz"
    raters: "{{case}}/ground_truth_expert{{rater}}.nii.gz"
    n_raters: 4
"""


def _timed(work, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def bench_reassemble(tmp: Path) -> list[tuple[str, float]]:
    from simulation.phantom import write_phantom
    from slicer.export import ExportOptions, export_dataset

    root, export, preds = tmp / "phantom", tmp / "export", tmp / "preds"
    write_phantom(root, cases=2, voxel=1.0, seed=0)
    export_dataset(ExportOptions(dataset="phantom", root=root, out=export, spacing=1.0, val_fraction=0.5))
    case = sorted(p.stem for p in (export / "cases").glob("*.json"))[0]
    preds.mkdir()
    for png in export.glob(f"masks/*/{case}_*.png"):
        shutil.copy(png, preds)
    rows = []
    settings = [("none", 1, False), ("none", 2, False), ("triplanar", 1, False), ("triplanar", 2, False)]
    for vote, folders, keep_existing in [*settings, ("triplanar", 1, True)]:
        options = ReassembleOptions(
            slices=export,
            preds=[preds] * folders,
            out=tmp / "seg",
            vote=vote,
            cases=[case],
            keep_existing=keep_existing,
            overwrite=True,
        )
        rule = "old lesions kept" if keep_existing else "old lesions dropped"
        rows.append(
            (
                f"reassemble 1 case, {vote}, {3 * folders} views, {rule}",
                _timed(lambda o=options: reassemble(o), 3),
            )
        )
    return rows


def _write_case(root: Path, case: str, rng: np.random.Generator) -> None:
    folder = root / case
    folder.mkdir(parents=True)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    mask = np.zeros(SHAPE, np.uint8)
    for _ in range(int(rng.integers(0, 8))):
        corner = [int(rng.integers(20, n - 30)) for n in SHAPE]
        mask[tuple(slice(c, c + int(rng.integers(2, 8))) for c in corner)] = 1
    image = (mask * 200 + 20).astype(np.uint8)
    image[0] = 0  # never constant, even without lesion
    nib.save(nib.Nifti1Image(image, affine), folder / "flair_time02_on_middle_space.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), folder / "ground_truth.nii.gz")
    for path in (
        "flair_time01_on_middle_space.nii.gz",
        *(f"ground_truth_expert{r}.nii.gz" for r in range(1, 5)),
    ):
        source = "flair_time02_on_middle_space.nii.gz" if path.startswith("flair") else "ground_truth.nii.gz"
        os.link(folder / source, folder / path)  # same bytes, read as separate files
    shifted = np.roll(mask, 1, axis=0)  # a prediction off by one voxel
    (root.parent / "pred").mkdir(exist_ok=True)
    nib.save(nib.Nifti1Image(shifted, affine), root.parent / "pred" / f"{case}.nii.gz")


def bench_evaluate(tmp: Path, n_cases: int, workers: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    root = tmp / "dataset"
    for i in range(n_cases):
        _write_case(root, f"case{i:03d}", rng)
    registry = tmp / "datasets.yaml"
    registry.write_text(LAYOUT.format(root=root))
    rows = []
    for figures in (False, True):  # figures: t0/t1 loaded and drawn per case
        options = EvaluateOptions(
            pred=tmp / "pred",
            dataset="bench",
            registry=registry,
            out=tmp / "eval",
            figures=figures,
            workers=workers,
        )
        label = f"evaluate {n_cases} cases x 5 references, {workers} workers, {'with' if figures else 'no'} figures"
        rows.append((label, _timed(lambda o=options: evaluate(o))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100, help="cases to evaluate (default 100)")
    parser.add_argument("--workers", type=int, default=2, help="evaluation processes (default 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = bench_reassemble(Path(folder)) + bench_evaluate(Path(folder), args.cases, args.workers)
    width = max(len(name) for name, _ in rows)
    print(f"{'step'.ljust(width)}  seconds")
    for name, seconds in rows:
        print(f"{name.ljust(width)}  {seconds:7.2f}")


if __name__ == "__main__":
    main()
