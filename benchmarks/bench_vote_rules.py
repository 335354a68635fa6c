"""Lesion-wise vote rules: which voxels a survivor keeps, and how a 3D view counts.

Trains UNeXt as the demo does (``--epochs``, 10 by default), predicts two held-out phantoms it never
saw (``--cases`` aligned patients, 16 by default, seed 1000; half as many with t0 misaligned by a known
rigid transform, seed 2000), fuses the three planes with each rule and scores by the MSSEG-2 rules
against the consensus (Dice and lesion F1 averaged over patients with new lesions, false-positive
lesions per patient without). A second table counts the vote's candidates (3 planes + 3D view) by
how many planes and whether the 3D view detect them, and whether they overlap a new lesion: the
candidates on which the 3D rules differ. Rules:

- ``union``: no vote (``--vote none``), the reference for sensitivity;
- ``triplanar, keep mean|union``: the lesion-wise vote; a survivor keeps the voxels where the mean of
  its detecting views clears the threshold (the rule before), or all of them, the union of its
  detecting views (``fusion.voting``'s default now);
- ``+ 3D, voter|tiebreak``: the same with a volumetric view beside the planes (one more voter, or
  at the minimum number of votes the 3D view must be one of them). Until a trained nnU-Net is at hand
  (``benchmarks/bench_nnunet.py``), the 3D view is the subtraction baseline (:mod:`fusion.baseline`),
  a genuinely volumetric detector with errors of its own.

    python benchmarks/bench_vote_rules.py --work benchmarks/output/vote_rules
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cc3d
import numpy as np
import pandas as pd

from fusion.baseline import subtraction_baseline
from fusion.existing import drop_existing_lesions
from fusion.views import read_baseline, read_views
from fusion.voting import VOLUME, fuse_views, lesion_votes
from mslong.demo import prepare_data, score_folder, train_unext, training_data
from mslong.options import DemoOptions
from runtime.files import save_nifti
from simulation.phantom import write_phantom
from slicer.export import ExportOptions, export_dataset
from slicer.geometry import CaseGeometry
from slicer.io import load_mask
from slicer.manifest import read_manifest
from slicer.writer import read_roi
from unext_long.predict import predict_folder

RULES: dict[str, dict[str, object]] = {
    "union": {"vote": "none"},
    "triplanar, keep mean": {"keep": "mean"},
    "triplanar, keep union": {"keep": "union"},
    "3D view alone": {"vote": "none", "only_3d": True},
    "+ 3D, voter, keep union": {"keep": "union", "volume_rule": "voter", "with_3d": True},
    "+ 3D, tiebreak, keep union": {"keep": "union", "volume_rule": "tiebreak", "with_3d": True},
}


def _held_out(folder: Path, cases: int, seed: int, voxel: float, misalign: bool) -> None:
    """``cases`` new patients, all held out, exported as the demo exports (finished ones are kept)."""
    table = write_phantom(folder / "phantom", cases=cases, voxel=voxel, seed=seed, misalign=misalign)
    table.assign(split="val").to_csv(folder / "phantom" / "cases.csv", index=False)
    export_dataset(
        ExportOptions(
            dataset="phantom",
            root=folder / "phantom",
            out=folder / "export",
            spacing=voxel,
            seed=seed,
            drop_empty_fraction=0.8,  # the demo's; held-out cases keep every slice anyway
        )
    )


def prepare(work: Path, epochs: int, cases: int) -> dict[str, Path]:
    """Train UNeXt, write and predict the held-out phantoms; returns their work folders."""
    demo = DemoOptions(out=work, unext_epochs=epochs)
    weights = train_unext(demo, training_data(demo, prepare_data(demo)), work / "runs")
    folders = {"aligned": work / "heldout_aligned", "misaligned": work / "heldout_misaligned"}
    _held_out(folders["aligned"], cases, 1000, demo.voxel, misalign=False)
    _held_out(folders["misaligned"], cases // 2, 2000, demo.voxel, misalign=True)
    for folder in folders.values():  # slices already predicted are kept
        predict_folder(weights, folder / "export" / "images" / "val", folder / "preds" / "unext", batch=16)
    return folders


@dataclass
class CaseViews:
    geometry: CaseGeometry
    roi: np.ndarray
    baseline: tuple[np.ndarray, np.ndarray]
    planes: dict[str, np.ndarray]
    volume: np.ndarray  # the 3D view


def case_views(export: Path, preds: Path, case: str, rows: pd.DataFrame) -> CaseViews:
    geometry = CaseGeometry.load(export / "cases" / f"{case}.json")
    roi = read_roi(export, geometry)
    t0, t1 = read_baseline(export, rows, geometry)
    planes = {k: np.where(roi, v, np.float32(0)) for k, v in read_views(rows, geometry, preds).items()}
    volume = subtraction_baseline(t1 / 255.0, t0 / 255.0, geometry.spacing, head=roi).astype(np.float32)
    return CaseViews(geometry, roi, (t0, t1), planes, volume)


def fuse_case(case: CaseViews, rule: dict) -> np.ndarray:
    """The case's mask on its export grid, fused by ``rule``, old lesions dropped as reassemble does."""
    views, names = list(case.planes.values()), list(case.planes)
    if rule.get("only_3d"):
        views, names = [case.volume], [VOLUME]
    elif rule.get("with_3d"):
        views, names = [*views, case.volume], [*names, VOLUME]
    options = {k: v for k, v in rule.items() if k not in ("only_3d", "with_3d")}
    mask, _ = fuse_views(views, spacing_mm=case.geometry.spacing, planes=names, **options)
    return drop_existing_lesions(mask, *case.baseline, spacing=case.geometry.spacing, inside=case.roi)


def candidate_counts(case: CaseViews, truth: np.ndarray) -> Counter:
    """Candidates of the vote (3 planes + 3D) by (planes detecting, 3D detecting, overlaps a new lesion)."""
    views = [*case.planes.values(), case.volume]
    binaries = [view > 0.5 for view in views]
    candidates, n = cc3d.connected_components(np.logical_or.reduce(binaries), connectivity=6, return_N=True)
    detected = lesion_votes(candidates, n, binaries)[:, 1:]
    real = np.zeros(n + 1, bool)
    real[np.unique(candidates[truth > 0])] = True
    planes, in_3d = detected[:-1].sum(axis=0), detected[-1]
    return Counter(zip(planes.tolist(), in_3d.tolist(), real[1:].tolist(), strict=True))


def score_set(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores per rule, and the vote's candidates by who detects them, on one held-out set."""
    export = folder / "export"
    manifest = read_manifest(export / "manifest.csv")
    outs = {
        name: folder / "rules" / name.replace(" ", "_").replace(",", "").replace("+", "with")
        for name in RULES
    }
    counts: Counter = Counter()
    for case, rows in manifest.groupby("case"):
        views = case_views(export, folder / "preds" / "unext", str(case), rows)
        truth = load_mask(folder / "phantom" / str(case) / "ground_truth.nii.gz")[0]
        counts += candidate_counts(views, views.geometry.to_export(truth, order=0))
        affine = np.asarray(views.geometry.original_affine)
        for name, rule in RULES.items():
            mask = views.geometry.to_original(fuse_case(views, rule).astype(np.uint8), order=0)
            save_nifti(mask, affine, outs[name] / f"{case}.nii.gz")
    scores = {
        name: score_folder(out, folder / "phantom", out.with_name(out.name + "_eval"))
        for name, out in outs.items()
    }
    table = pd.DataFrame(
        [
            (p, d, counts[(p, d, True)], counts[(p, d, False)])
            for p in range(4)
            for d in (False, True)
            if p or d
        ],
        columns=["planes", "3D view", "new lesions", "false"],
    )
    return pd.DataFrame(scores).T.rename_axis("rule"), table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/output/vote_rules"))
    parser.add_argument("--epochs", type=int, default=10, help="UNeXt epochs (default 10)")
    parser.add_argument(
        "--cases",
        type=int,
        default=16,
        help="aligned held-out patients (default 16; half as many misaligned)",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    folders = prepare(args.work, args.epochs, args.cases)
    for title, folder in folders.items():
        scores, candidates = score_set(folder)
        print(f"\n## held out, {title}: UNeXt {args.epochs} epochs, three planes")
        print(scores.to_string(float_format=lambda v: f"{v:.3f}"))
        print("\ncandidates of 3 planes + 3D view, by who detects them (overlapping a new lesion or not)")
        print(candidates.to_string(index=False))
    print(f"\nbench_vote_rules: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
