"""Ensembles against their members on held-out phantoms: every member alone, the vote before
(triplanar), the default lead rule (the model with the best validation record); mean and spread
over training seeds.

A phantom of ``--cases`` patients at 1.5 mm is split three ways: the rest trains, ``--val``
patients give each model its validation record (``fusion.record``), ``--test`` patients are
scored (MSSEG-2 rules against the consensus, ``make demo``'s table); each ``--fresh-seeds``
phantom of ``--fresh-cases`` patients is scored too. Per training seed: UNeXt and
YOLOv9t-seg-long as ``make demo`` trains them, and a deliberately weak member, YOLO after one
epoch. Each model predicts the validation slices and each test set into folders of their own;
``reassemble --validation`` reads the records from the validation folders. Every trained model
and prediction is cached in ``--work``; a second run only fuses and scores.

    python benchmarks/bench_ensemble.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from fusion.reassemble import ReassembleOptions, reassemble
from mslong.demo import DATASET, predict_split, score_folder, train_unext, train_yolo, training_data
from mslong.options import DemoOptions
from runtime.files import atomic_path
from simulation.phantom import write_phantom
from slicer.export import ExportOptions, export_dataset

VOXEL = 1.5
# Which members each ensemble joins: two trained models, and the strong one with a weak one.
ENSEMBLES = {"UNeXt + YOLO": ("unext", "yolo"), "UNeXt + weak YOLO": ("unext", "weak_yolo")}
MEMBER_NAMES = {"unext": "UNeXt", "yolo": "YOLO", "weak_yolo": "weak YOLO (1 epoch)"}


def split_phantom(phantom: Path, table: pd.DataFrame, val: int, test: int) -> None:
    """Hold out ``val`` and ``test`` patients, each set with one patient without new lesion; the
    patients with lesions are dealt in turn (most lesions first), so that every split gets its share."""
    empty = table.index[table["new_lesions"] == 0].tolist()
    lesion = table.sort_values("new_lesions", ascending=False, kind="stable").index
    lesion = lesion[table.loc[lesion, "new_lesions"] > 0].tolist()
    if len(empty) < 2 or len(lesion) < val + test:
        raise SystemExit(f"the phantom has {len(empty)} empty and {len(lesion)} lesion cases: too few")
    splits = {i: "train" for i in table.index}
    splits.update({empty[0]: "val", empty[1]: "test"})
    quota = {"val": val - 1, "test": test - 1}
    for turn, case in enumerate(lesion):
        split = ("train", "val", "test")[turn % 3]
        if split != "train" and quota[split] > 0:
            splits[case], quota[split] = split, quota[split] - 1
    with atomic_path(phantom / "cases.csv") as tmp:
        table.assign(split=[splits[i] for i in table.index]).to_csv(tmp, index=False)


def prepare(work: Path, cases: int, val: int, test: int) -> Path:
    """Phantom and export (once); returns the dataset YAML."""
    phantom, export = work / "phantom", work / "export"
    if not (phantom / "cases.csv").is_file():
        table = write_phantom(phantom, cases=cases, voxel=VOXEL, seed=0)
        split_phantom(phantom, table, val, test)
    summary = export_dataset(
        ExportOptions(
            dataset=DATASET, root=phantom, out=export, spacing=VOXEL, seed=0, drop_empty_fraction=0.8
        )
    )
    return summary.yaml_path


def train_members(work: Path, data: Path, seed: int) -> dict[str, Path]:
    """The three members of one training seed (each cached under ``work/runs/seed<N>``)."""
    options = DemoOptions(out=work, seed=seed)
    runs, data = work / "runs" / f"seed{seed}", training_data(options, data)
    return {
        "unext": train_unext(options, data, runs),
        "yolo": train_yolo(options, data, runs),
        "weak_yolo": train_yolo(replace(options, yolo_epochs=1), data, runs, name="weak_yolo"),
    }


@dataclass(frozen=True)
class TestSet:
    """Patients the ensembles are scored on: an export's ``test`` split and its phantom."""

    name: str
    export: Path
    phantom: Path


def fresh_test_set(work: Path, cases: int, seed: int) -> TestSet:
    """A phantom of its own (``seed``), every patient a test patient, exported as the main one."""
    phantom, export = work / f"phantom_fresh{seed}", work / f"export_fresh{seed}"
    if not (phantom / "cases.csv").is_file():
        table = write_phantom(phantom, cases=cases, voxel=VOXEL, seed=seed)
        with atomic_path(phantom / "cases.csv") as tmp:
            table.assign(split="test").to_csv(tmp, index=False)
    export_dataset(
        ExportOptions(dataset=DATASET, root=phantom, out=export, spacing=VOXEL, seed=0, split="test")
    )
    return TestSet(f"fresh{seed}", export, phantom)


def predict_members(
    work: Path, weights: dict[str, Path], seed: int, test_sets: list[TestSet]
) -> dict[str, dict[str, Path]]:
    """Each member's predictions of the validation slices and of each test set: ``{member: {set: folder}}``."""
    preds = work / "preds" / f"seed{seed}"
    by_set = {"val": predict_split(work / "export", weights, preds / "val", "val", "cpu")}
    for test in test_sets:
        by_set[test.name] = predict_split(test.export, weights, preds / test.name, "test", "cpu")
    return {member: {name: folders[member] for name, folders in by_set.items()} for member in weights}


def fuse_and_score(
    work: Path, test: TestSet, name: str, preds: list[Path], vote: str, validation: list[Path]
) -> dict:
    """Reassemble a test set as ``reassemble`` does and score it (``make demo``'s table)."""
    out = work / "seg" / test.name / name
    options = ReassembleOptions(
        slices=test.export, preds=preds, out=out, split="test", vote=vote, validation=validation
    )
    reassemble(options)
    return score_folder(out, test.phantom, work / "scores" / test.name / name, split="test")


def seed_rows(
    work: Path, seed: int, folders: dict[str, dict[str, Path]], test: TestSet
) -> dict[tuple[str, str], dict]:
    rows = {}
    for member, by_set in folders.items():
        rows[(MEMBER_NAMES[member], "alone")] = fuse_and_score(
            work, test, f"seed{seed}_{member}", [by_set[test.name]], "triplanar", []
        )
    for ensemble, members in ENSEMBLES.items():
        preds, validation = [folders[m][test.name] for m in members], [folders[m]["val"] for m in members]
        slug = "_".join(members)
        for vote, label in (("triplanar", "triplanar (every member alike)"), ("lead", "lead (default)")):
            rows[(ensemble, label)] = fuse_and_score(
                work, test, f"seed{seed}_{slug}_{vote}", preds, vote, validation
            )
    return rows


def summarise(per_seed: dict[int, dict[tuple[str, str], dict]]) -> pd.DataFrame:
    """Mean and spread (sample standard deviation) over the seeds, one row per method."""
    frames = [pd.DataFrame(rows).T.assign(seed=seed) for seed, rows in per_seed.items()]
    table = pd.concat(frames).rename_axis(["members", "rule"]).reset_index()
    columns = ["Dice", "F1", "FP lesions / empty case"]
    grouped = table.groupby(["members", "rule"], sort=False)[columns]
    mean, spread = grouped.mean(), grouped.std()
    return pd.DataFrame(
        {
            c: [f"{m:.3f} ± {s:.3f}" for m, s in zip(mean[c], spread[c].fillna(0), strict=True)]
            for c in columns
        },
        index=mean.index,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/output/ensemble"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cases", type=int, default=22)
    parser.add_argument("--val", type=int, default=6)
    parser.add_argument("--test", type=int, default=6)
    parser.add_argument("--stage", choices=("train", "all"), default="all")
    parser.add_argument("--fresh-seeds", type=int, nargs="*", default=[7],
                        help="phantoms of their own, every patient scored (none: the test split only)")  # fmt: skip
    parser.add_argument("--fresh-cases", type=int, default=8)
    args = parser.parse_args()
    data = prepare(args.work, args.cases, args.val, args.test)
    weights = {seed: train_members(args.work, data, seed) for seed in args.seeds}
    if args.stage == "train":
        return
    test_sets = [TestSet("test", args.work / "export", args.work / "phantom")]
    test_sets += [fresh_test_set(args.work, args.fresh_cases, seed) for seed in args.fresh_seeds]
    folders = {seed: predict_members(args.work, weights[seed], seed, test_sets) for seed in args.seeds}
    for test in test_sets:
        per_seed = {seed: seed_rows(args.work, seed, folders[seed], test) for seed in args.seeds}
        patients = int((pd.read_csv(test.phantom / "cases.csv")["split"] == "test").sum())
        seeds = " ".join(map(str, args.seeds))
        print(f"\n## {test.name}: {patients} patients; training seeds {seeds}; mean ± sd over the seeds")
        print(summarise(per_seed).to_string())
        for seed, rows in per_seed.items():
            print(f"\nseed {seed}")
            print(pd.DataFrame(rows).T.round(3).to_string())


if __name__ == "__main__":
    main()
