"""Thick-slice scans: does the acquisition plane alone vote better than the three planes?

A scan of 3 mm axial slices holds its detail in the axial plane; coronal and sagittal slices of
it are interpolated between slices. This compares, for each trained model alone, the triplanar
vote (every plane the model was trained on, ``mslong segment``'s default) with the axial plane
alone (``mslong segment --orientations axial``):

1. *choice*: a realistic phantom with 3 mm axial slices, drawn with its own seed (no model
   trained on it), scored against its consensus by the MSSEG-2 rules;
2. *report*: the two real pairs of the Ljubljana database (``--root``; 0.72 x 0.72 x 3 mm),
   from the co-registered and the raw scans, scored as ``benchmarks/bench_real.py`` scores them.

A rule is chosen on (1) only; (2) says what it does on real scans. ``fp_lesions`` is per case
without new lesion on the phantom (the demo's column), per pair on the real scans.

    python benchmarks/bench_planes.py --root ../shared/data/ljubljana \
        --weights UNEXT.pt YOLO.pt [--work DIR] [--cases 8] [--seed 77]

The weights should be models that trained on 3 mm slices (``bench_real.py --rows pseudo
--pseudo-thickness 3`` trains them under its ``--work``, ``models_pseudo/runs/*/weights/best.pt``).
Masks are cached under ``--work``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import bench_real  # benchmarks/ is on sys.path when this script runs
import pandas as pd

from mslong.demo import score_folder
from mslong.segment import segment_patient
from simulation.phantom import write_phantom
from slicer.datasets import load_dataset

RULES = {"triplanar (default)": None, "axial plane alone": ("axial",)}
SCORES = ["dice", "f1", "sensitivity", "precision", "fp_lesions"]


def phantom_scores(root: Path, weights: list[Path], orientations: tuple[str, ...] | None, out: Path) -> dict:
    """Models (none: the subtraction baseline) on every case of a phantom, one rule; the demo's scores."""
    out.mkdir(parents=True, exist_ok=True)
    for case in load_dataset("phantom", root=root):
        target = out / f"{case.id}.nii.gz"
        if not target.is_file():
            segment_patient(case.t0, case.t1, target, weights, orientations=orientations,
                            brain_mask_file=case.brain_mask)  # fmt: skip
    scores = score_folder(out, root, out.parent / f"{out.name}_evaluation", split=None)
    return {"dice": scores["Dice"], "f1": scores["F1"], "sensitivity": scores["sensitivity"],
            "precision": scores["precision"], "fp_lesions": scores["FP lesions / empty case"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the ljubljana folder (longitudinal/)")
    parser.add_argument(
        "--weights", type=Path, nargs="+", required=True, help="models trained on 3 mm slices"
    )
    parser.add_argument("--work", type=Path, default=Path("benchmarks/output/planes"))
    parser.add_argument("--cases", type=int, default=8, help="thick-slice phantom patients")
    parser.add_argument("--seed", type=int, default=77, help="the phantom's seed (none trained on it)")
    parser.add_argument("--slice-thickness", type=float, default=3.0)
    args = parser.parse_args()
    started = time.perf_counter()
    phantom = args.work / f"phantom_{args.seed}"
    if not phantom.is_dir():
        write_phantom(phantom, cases=args.cases, voxel=1.0, seed=args.seed, realistic=True,
                      slice_thickness=args.slice_thickness)  # fmt: skip
    records = []
    for weights in args.weights:
        model = weights.parent.parent.name
        for rule, orientations in RULES.items():
            tag = f"{model}_{'all' if orientations is None else '_'.join(orientations)}"
            scores = phantom_scores(phantom, [weights], orientations, args.work / "phantom_masks" / tag)
            records.append({"model": model, "rule": rule, "data": "phantom 3 mm (choice)", **scores})
            for source in bench_real.INPUTS:
                pairs = [
                    bench_real.score_pair(
                        args.root / "longitudinal" / patient,
                        source,
                        [weights],
                        args.work / "real_masks" / f"{patient}_{source}_{tag}.nii.gz",
                        spacing=None,
                        orientations=orientations,
                    )
                    for patient in bench_real.PATIENTS
                ]
                mean = pd.DataFrame(pairs)[SCORES].mean()
                records.append({"model": model, "rule": rule, "data": f"real pairs, {source}", **mean})
    table = pd.DataFrame(records).set_index(["data", "model", "rule"]).sort_index()
    print(f"\n## Acquisition plane against three planes (phantom: {args.cases} patients, seed {args.seed}, "
          f"{args.slice_thickness:g} mm slices; real pairs: mean of {', '.join(bench_real.PATIENTS)})")  # fmt: skip
    print(table.round(3).to_string())
    print(f"\nbench_planes: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
