"""``mslong demo`` (``make demo``): the whole pipeline on a synthetic phantom, one table at the end.

Steps, each skipped when its output is already there (``--overwrite`` redoes them):
phantom -> export -> train UNeXt and YOLOv9t-seg-long -> predict the validation slices ->
reassemble (per plane and with every vote mode) -> evaluate by the MSSEG-2 rules -> print
the comparison with the subtraction baseline, write figures and ``results.md``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from fusion.evaluate import CONSENSUS, PREDICTION, EvaluateOptions, evaluate
from fusion.reassemble import ReassembleOptions, reassemble
from mslong.options import DemoOptions
from mslong.segment import segment_patient
from runtime.devices import select_device
from runtime.files import atomic_path
from simulation.phantom import write_phantom
from slicer.dataset_yaml import write_listing
from slicer.datasets import load_dataset
from slicer.export import ExportOptions, export_dataset
from slicer.manifest import read_manifest
from slicer.summary import case_table

__all__ = [
    "run_demo",
    "prepare_data",
    "train_models",
    "training_data",
    "train_unext",
    "train_yolo",
    "predict_split",
    "score_methods",
    "score_folder",
    "fuse_method",
    "folder_name",
    "format_report",
    "Method",
    "METHODS",
    "BASELINES",
]

DATASET = "phantom"


@dataclass(frozen=True)
class Method:
    """One row of the results table: which prediction folders, which planes, which vote."""

    name: str
    models: tuple[str, ...]
    orientations: tuple[str, ...] = ("axial", "coronal", "sagittal")
    vote: str = "triplanar"
    keep_existing: bool = False


# The classic subtraction baseline (the floor of the issue) and the same with fusion's rule
# that drops lesions already there at baseline, as ``mslong segment`` without weights gives it.
BASELINES = {"Subtraction baseline": True, "Subtraction baseline, old lesions dropped": False}
METHODS = (
    Method("UNeXt axial", ("unext",), ("axial",), "none"),
    Method("UNeXt coronal", ("unext",), ("coronal",), "none"),
    Method("UNeXt sagittal", ("unext",), ("sagittal",), "none"),
    Method("UNeXt 3 planes, mean", ("unext",), vote="mean"),
    Method("UNeXt 3 planes, majority", ("unext",), vote="majority"),
    Method("UNeXt triplanar, old lesions kept", ("unext",), keep_existing=True),
    Method("UNeXt triplanar", ("unext",)),
    Method("YOLO triplanar", ("yolo",)),
    Method("UNeXt + YOLO triplanar", ("unext", "yolo")),
    # The default: the leader by each model's record on these same validation patients (the
    # demo has no third split), so the choice is in-sample here (docs/results.md).
    Method("UNeXt + YOLO lead", ("unext", "yolo"), vote="lead"),
)


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _assign_splits(phantom: Path, table: pd.DataFrame, val_cases: int) -> None:
    """Hold out ``val_cases`` cases, one of them without new lesion, via the metadata CSV's split column.

    ``val_cases >= len(table)`` holds every case out (a test set for models trained elsewhere).
    """
    empty = table.index[table["new_lesions"] == 0].tolist()
    lesion = table.index[table["new_lesions"] > 0].tolist()
    val = (
        set(table.index)
        if val_cases >= len(table)
        else set(empty[:1] + lesion[-(val_cases - len(empty[:1])) :])
    )
    table = table.assign(split=["val" if i in val else "train" for i in table.index])
    with atomic_path(phantom / "cases.csv") as tmp:
        table.to_csv(tmp, index=False)


def train_unext(options: DemoOptions, data: Path, runs: Path, name: str = "unext") -> Path:
    """UNeXt as the demo trains it (seed ``options.seed``) into ``runs/name``; returns best.pt."""
    from unext_long.train import TrainOptions, train

    best = runs / name / "weights" / "best.pt"
    if best.exists() and not options.overwrite:
        print(f"kept {best}")
        return best
    result = train(
        TrainOptions(
            data=data,
            epochs=options.unext_epochs,
            imgsz=128,  # random 128x128 crops (lesions kept) of the ~110x130 slices
            batch=8,
            stem="siamese",
            size="unext",
            lesion_fraction=options.unext_lesion_fraction,
            project=runs,
            name=name,
            overwrite=True,
            seed=options.seed,
            device=options.device or "auto",
            workers=0,
        )
    )
    return result.run_dir / "weights" / "best.pt"


def _derived_yaml(data: Path, suffix: str, **changes: str) -> Path:
    """A copy of the dataset YAML ``data`` with some keys changed, written beside it."""
    config = {**yaml.safe_load(data.read_text()), **changes}
    target = data.with_name(f"{data.stem}_{suffix}.yaml")
    with atomic_path(target) as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def training_data(options: DemoOptions, data: Path) -> Path:
    """The export's dataset YAML with ``val`` cut to a seeded sample (lesion slices first).

    Both trainers validate on it (UNeXt every epoch, to pick its best checkpoint; ultralytics
    after the last epoch even with ``val=False``). On a CPU a few hundred slices say as much
    about training as the whole split at a fraction of the time; the scores of the table come
    from every validation slice, predicted after training.
    """
    manifest = read_manifest(data.parent / "manifest.csv")
    val = manifest[manifest["split"] == "val"].sample(frac=1.0, random_state=options.seed)
    chosen = pd.concat([val[val["instances"] > 0], val[val["instances"] == 0]]).head(options.val_slices)
    return _derived_yaml(
        data, "train", val=write_listing(data.parent, "val_sample.txt", "val", sorted(chosen["stem"]))
    )


def train_yolo(options: DemoOptions, data: Path, runs: Path, name: str = "yolo") -> Path:
    """YOLOv9t-seg-long as the demo trains it (seed ``options.seed``) into ``runs/name``; returns best.pt."""
    from ultralytics import YOLO

    from yolo_long.build import init_checkpoint, train_config_path

    best = runs / name / "weights" / "best.pt"
    if best.exists() and not options.overwrite:
        print(f"kept {best}")
        return best
    init = init_checkpoint("yolov9t-seg-long", "siamese", data, runs / "yolov9t-seg-long.pt", overwrite=True)
    # The cfg= file a user trains with (yolo segment train cfg=...), then this run's own choices.
    YOLO(str(init), task="segment").train(
        cfg=str(train_config_path(init)), **_yolo_run_args(options, runs, name)
    )
    return best


def _yolo_run_args(options: DemoOptions, runs: Path, name: str) -> dict[str, object]:
    return {
        "val": False,  # validate once, after the last epoch
        "epochs": options.yolo_epochs,
        "imgsz": options.yolo_imgsz,
        "batch": 8,
        "project": str(runs.resolve()),
        "name": name,
        "exist_ok": True,
        "device": str(select_device(options.device)),
        "workers": 0,
        "seed": options.seed,
        "plots": False,
    }


def predict_split(
    export: Path, weights: Mapping[str, Path], preds: Path, split: str = "val", device: str | None = None
) -> dict[str, Path]:
    """Each model of ``weights`` (``unext``, ``yolo``...: a UNeXt, else a YOLO checkpoint)
    predicts the slices of ``split`` into ``preds/<model>``; returns those folders."""
    from unext_long.predict import predict_folder as unext_predict
    from yolo_long.predict import predict_folder as yolo_predict

    images, folders = export / "images" / split, {}
    for model, path in weights.items():
        folders[model] = preds / model
        if model.endswith("unext"):
            unext_predict(path, images, folders[model], batch=16, device=device or "auto")
        else:
            yolo_predict(path, images, folders[model], batch=16, device=device)
    return folders


def _subtraction(options: DemoOptions, phantom: Path, out: Path, keep_existing: bool) -> None:
    """The subtraction baseline on every validation case, as ``mslong segment`` runs it without weights."""
    cases = [c for c in load_dataset(DATASET, root=phantom) if c.split == "val"]
    for case in tqdm(cases, desc="subtraction baseline", unit="case"):
        target = out / f"{case.id}.nii.gz"
        if not target.exists() or options.overwrite:
            segment_patient(case.t0, case.t1, target, spacing=options.voxel, keep_existing=keep_existing)


def score_folder(
    pred: Path, phantom: Path, out: Path, figures: bool = False, split: str | None = "val"
) -> dict[str, float]:
    """The table's scores of one folder of masks against the consensus of the phantom's ``split``
    (None: a phantom without splits, every case)."""
    cases = [case.id for case in load_dataset(DATASET, root=phantom) if case.split == split]
    table = evaluate(
        EvaluateOptions(pred=pred, dataset=DATASET, root=phantom, out=out, cases=cases, figures=figures)
    )
    rows = table[(table["segmentation"] == PREDICTION) & (table["reference"] == CONSENSUS)]
    lesion_cases, empty_cases = rows[rows["ref_lesions"] > 0], rows[rows["ref_lesions"] == 0]
    return {
        "Dice": lesion_cases["dice"].mean(),
        "F1": lesion_cases["f1"].mean(),
        "sensitivity": lesion_cases["sensitivity"].mean(),
        "precision": lesion_cases["precision"].mean(),
        "FP lesions / empty case": empty_cases["fp_lesions"].mean() if len(empty_cases) else np.nan,
    }


def folder_name(method: Method) -> str:
    """The folder a method's masks go to, named after its table row."""
    return method.name.replace(" ", "_").replace(",", "").replace("+", "and")


def fuse_method(
    method: Method, export: Path, preds: Mapping[str, Path], out: Path, overwrite: bool = False
) -> Path:
    """Reassemble ``export``'s validation split as ``method`` says into ``out``.

    ``preds`` maps each model of ``method.models`` to its prediction folder; each folder is
    thresholded at its model's own operating point (from its ``provenance.json``).
    """
    reassemble(
        ReassembleOptions(
            slices=export,
            preds=[preds[model] for model in method.models],
            out=out,
            vote=method.vote,
            keep_existing=method.keep_existing,
            orientations=method.orientations,
            split="val",
            overwrite=overwrite,
        )
    )
    return out


def _reassemble_all(options: DemoOptions, export: Path, preds: Path, results: Path) -> dict[str, Path]:
    folders = {model: preds / model for model in ("unext", "yolo")}
    # The demo's fused folders are its own and take seconds: one made by an earlier mslong (another
    # record) is remade rather than refused; finished cases of the same record are still kept.
    return {
        method.name: fuse_method(method, export, folders, results / folder_name(method), overwrite=True)
        for method in METHODS
    }


def prepare_data(options: DemoOptions) -> Path:
    """Phantom (with ``options.val_cases`` held out) and its export; returns the dataset YAML."""
    phantom, export = options.out / "phantom", options.out / "export"
    _step(f"phantom: {options.cases} patients at {options.voxel} mm (seed {options.seed})")
    table = write_phantom(phantom, cases=options.cases, voxel=options.voxel, seed=options.seed)
    _assign_splits(phantom, table, options.val_cases)
    print(case_table(DATASET, root=phantom).to_string(index=False))

    _step("export: registration, normalisation, 2.5D slices in three orientations")
    summary = export_dataset(
        ExportOptions(
            dataset=DATASET,
            root=phantom,
            out=export,
            spacing=options.voxel,
            seed=options.seed,
            drop_empty_fraction=0.8,
            overwrite=options.overwrite,
        )
    )
    print(summary.line())
    return summary.yaml_path


def train_models(
    options: DemoOptions, data: Path, models: Sequence[str] = ("unext", "yolo")
) -> dict[str, Path]:
    """Train UNeXt and YOLOv9t-seg-long briefly (or those of ``models``); returns their best checkpoints."""
    runs = options.out / "runs"
    data = training_data(options, data)
    weights = {}
    if "unext" in models:
        _step("train UNeXt (siamese two-timepoint stem)")
        weights["unext"] = train_unext(options, data, runs)
    if "yolo" in models:
        _step("train YOLOv9t-seg-long (siamese stem) with the ultralytics trainer")
        weights["yolo"] = train_yolo(options, data, runs)
    return weights


def score_methods(options: DemoOptions, weights: dict[str, Path]) -> pd.DataFrame:
    """Predict the validation slices of ``options.out``'s export, fuse every way, score against the consensus."""
    out = options.out
    phantom, export, preds, results = (out / p for p in ("phantom", "export", "preds", "results"))
    _step("predict the validation slices")
    predict_split(export, weights, preds, device=options.device)

    _step("reassemble, vote, and the subtraction baseline")
    folders = {}
    for name, keep_existing in BASELINES.items():
        folders[name] = results / folder_name(Method(name, ()))
        _subtraction(options, phantom, folders[name], keep_existing)
    folders.update(_reassemble_all(options, export, preds, results))

    _step("evaluate (MSSEG-2 rules, against the consensus)")
    scores = {
        name: score_folder(
            folder, phantom, out / "evaluation" / folder.name, figures=name == METHODS[-1].name
        )
        for name, folder in folders.items()
    }
    return pd.DataFrame(scores).T.rename_axis("method")


def format_report(report: pd.DataFrame) -> str:
    return report.to_string(float_format=lambda v: f"{v:.3f}")


def run_demo(options: DemoOptions) -> pd.DataFrame:
    """Run every step and return the results table (one row per method, scores vs the consensus)."""
    start = time.perf_counter()
    report = score_methods(options, train_models(options, prepare_data(options)))
    text = format_report(report)
    with atomic_path(options.out / "results.md") as tmp:
        tmp.write_text(
            f"# mslong demo: {options.val_cases} validation patients of {options.cases}\n\n```\n{text}\n```\n"
        )
    figures = options.out / "evaluation" / folder_name(METHODS[-1]) / "figures"
    print(f"\n{text}")
    print(
        f"\nmslong demo: {len(report)} methods scored on {options.val_cases} validation patients in "
        f"{time.perf_counter() - start:.0f} s; tables in {options.out / 'results.md'}, figures in {figures}"
    )
    return report
