"""Accuracy on real MS FLAIR pairs: the Ljubljana longitudinal database (CC-BY), one table.

The two real pairs (``ROOT/longitudinal/patient01``, ``patient12``) are scored by the MSSEG-2
rules against their brightening-change reference, in the database's common space, from two
inputs: the co-registered scans (``flair_time0{1,2}_on_middle_space``, the MSSEG-2 form) and
the raw scans as acquired (``raw/study{1,2}_FLAIR``: registration included; the mask is
mapped from the raw follow-up's grid into the common space with the database's
``raw/study2_FLAIR_to_common_space.txt``). Every row runs ``mslong segment`` as a user would
(brain mask computed by deepbet, old lesions dropped; a set of several networks is fused twice,
every network alike (triplanar) and by the lead rule, whose evidence is each network's
predictions of its training export's validation cases):

- the subtraction baseline (no weights), with its phantom default z, or with z chosen on the
  other real pair (``calibrated``) or on the pseudo pairs below (``pseudo-calibrated``);
- the baseline's candidates at a low z checked by a lesion verifier (``verified``,
  docs/verifier.md) trained on lesions transplanted into the *other* real pair (both time
  directions) and into 3 mm pseudo pairs of the single-time-point scans: leave one pair out;
- UNeXt, YOLO and both, trained on the realistic phantom (a head, a shorter baseline field
  of view, 3 mm slices);
- the same trained on the realistic phantom plus pseudo-longitudinal pairs made from the two
  real single-time-point scans (``ROOT/cross_sectional``, the evolution of
  ``--simulate-evolution``; ``--pseudo-draws N`` draws N pseudo pairs from each scan,
  ``--pseudo-thickness 3`` acquires them again with 3 mm axial slices, as the real pairs);
- the pseudo row's networks at an operating point (probability threshold, views that must
  agree) chosen on pseudo pairs held out from their training (``pseudo-tuned``);
- the same trained on the realistic phantom plus the *other* real pair: patient01 is scored
  by the models trained with patient12's pair and the reverse, so no pair is scored by a
  model that trained on it.

    python benchmarks/bench_real.py --root ../shared/data/ljubljana
    python benchmarks/bench_real.py --root ../shared/data/ljubljana --rows baseline calibrated  # no training
    python benchmarks/bench_real.py --root ../shared/data/ljubljana --rows baseline verified --spacing 1
    python benchmarks/bench_real.py --root ../shared/data/ljubljana --rows pseudo --models yolo --pseudo-draws 4 --yolo-epochs 14
    python benchmarks/bench_real.py --root ../shared/data/ljubljana --rows pseudo --models yolo --pseudo-thickness 3
    python benchmarks/bench_real.py --root ../shared/data/ljubljana --rows pseudo-tuned --models yolo --pseudo-thickness 3

``--models`` trains only the networks named.

Every default comes from the phantom. The ``calibrated`` row alone looks at real longitudinal
labels: the baseline's z threshold for one pair is the best on the other pair, never on the pair
it scores; ``pseudo-calibrated`` and ``pseudo-tuned`` take the best on pseudo pairs (real
tissue, simulated change).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from fusion.metrics import detection_by_size, score_case
from fusion.verify_train import TrainingPlan, donors_of, drawn_cases, read_pair, train_from_datasets
from mslong.demo import predict_split, train_models, training_data
from mslong.options import DemoOptions
from mslong.segment import segment_patient
from runtime.files import save_nifti
from simulation.evolution import erase_lesions, simulate_evolution
from simulation.phantom import write_phantom
from simulation.phantom.acquisition import slices_per_thick, thick_affine, thicken
from simulation.phantom.case import MASK_FRACTION
from slicer.brain import acquired
from slicer.dataset_yaml import write_train_listing
from slicer.datasets import load_dataset
from slicer.export import EVOLUTION_DRIFT, ExportOptions, case_seed, export_dataset
from slicer.io import load_mask, load_volume, spacing_of
from slicer.manifest import read_manifest
from slicer.normalise import head_mask
from slicer.register import register

PATIENTS = ("patient01", "patient12")
INPUTS = {
    "co-registered": ("flair_time01_on_middle_space.nii.gz", "flair_time02_on_middle_space.nii.gz"),
    "raw": ("raw/study1_FLAIR.nii.gz", "raw/study2_FLAIR.nii.gz"),
}
ROWS = (
    "baseline",
    "verified",
    "calibrated",
    "pseudo-calibrated",
    "phantom",
    "pseudo",
    "pseudo-tuned",
    "pair",
    "transplant",
    "transplant-tuned",
    "shipped",
)
VERIFIED = "Verified candidates"
Z_GRID = (3.0, 4.0, 5.0, 6.0, 8.0)  # the calibrated row's candidate thresholds
# The pseudo-tuned row's candidate operating points: a probability threshold for every model
# (YOLO's probability is its instances' confidence, kept from 0.05) and the views that must agree.
NETWORK_GRID = [{"threshold": t, "min_votes": v} for v in (1, 2) for t in (0.05, 0.1, 0.15, 0.25, 0.4)]
# Validation slices the transplant rows' UNeXt is checked on each epoch: on 2 CPU cores 400
# cost a quarter of an epoch of 64-pixel crops.
VAL_SLICES = 200
HELD_OUT_SEED = 1000  # seeds the held-out pseudo pairs' evolution apart from the trained ones
BASELINE = "Subtraction baseline"
MODEL_SETS = {"UNeXt": ("unext",), "YOLO": ("yolo",), "UNeXt + YOLO": ("unext", "yolo")}


def to_common_space(mask_path: Path, patient: Path) -> np.ndarray:
    """A mask on the raw follow-up's grid resampled into the database's common space."""
    reference = sitk.ReadImage(str(patient / "ground_truth.nii.gz"))
    transform = sitk.ReadTransform(str(patient / "raw" / "study2_FLAIR_to_common_space.txt"))
    moved = sitk.Resample(sitk.ReadImage(str(mask_path)), reference, transform, sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(moved).transpose(2, 1, 0) > 0


def registration_error(patient: Path) -> tuple[float, float]:
    """Median and 95th percentile (mm) over the head of the distance between where our rigid
    registration of the raw pair and the database's own transforms put the follow-up's anatomy."""
    t0, t0_img = load_volume(patient / INPUTS["raw"][0])
    t1, t1_img = load_volume(patient / INPUTS["raw"][1])
    head = head_mask(t1)
    _, info, _ = register(t1, t1_img, t0, t0_img, "rigid", mask=head)
    to_common = [
        sitk.ReadTransform(str(patient / "raw" / f"{study}_FLAIR_to_common_space.txt"))
        for study in ("study1", "study2")
    ]
    lps = np.array([-1.0, -1.0, 1.0])  # ITK's world is LPS, nibabel's RAS
    points = (np.c_[np.argwhere(head)[::500], np.ones(len(np.argwhere(head)[::500]))] @ t1_img.affine.T)[
        :, :3
    ]
    theirs = np.array(
        [
            to_common[0].TransformPoint(to_common[1].GetInverse().TransformPoint(tuple(p * lps)))
            for p in points
        ]
    )
    ours = (np.c_[points, np.ones(len(points))] @ info.t1_to_t0_world.T)[:, :3]
    distance = np.linalg.norm(theirs * lps - ours, axis=1)
    return float(np.median(distance)), float(np.percentile(distance, 95))


def score_pair(
    patient: Path,
    source: str,
    weights: list[Path],
    out: Path,
    spacing: float | None,
    verifier: Path | str | None = None,
    validation: list[Path] | None = None,
    **setting: object,
) -> dict:
    """``mslong segment`` on one real pair from one input, scored in the common space
    (``spacing`` None: the models' own).

    ``verifier``: without weights, the lesion verifier that checks the baseline's candidates
    (None: the plain baseline). ``validation``: the models' predictions of their training
    export's validation cases: the lead rule fuses them (None: every model votes alike,
    triplanar). ``setting``: the operating point and planes, as
    :func:`mslong.segment.segment_patient` takes them (``baseline_z``, ``threshold``,
    ``min_votes``, ``orientations``); its defaults otherwise. The record's ``by_size`` lists the reference's
    lesions and the detected ones per size bin.
    """
    t0, t1 = (patient / name for name in INPUTS[source])
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        segment_patient(t0, t1, out, weights, spacing=spacing, verifier=verifier, validation=validation or (),
                        vote="lead" if validation else "triplanar", **setting)  # fmt: skip
    reference = nib.load(patient / "ground_truth.nii.gz")
    prediction = to_common_space(out, patient) if source == "raw" else np.asarray(nib.load(out).dataobj) > 0
    truth, spacing_mm = np.asarray(reference.dataobj) > 0, spacing_of(reference.affine)
    outside = _outside_brain(prediction, patient)
    return {**score_case(truth, prediction, spacing_mm), "lesions_outside_brain": outside,
            "by_size": detection_by_size(truth, prediction, spacing_mm)}  # fmt: skip


def _outside_brain(prediction: np.ndarray, patient: Path) -> int:
    """Predicted lesions with voxels outside the dataset's brain mask (dilated by 3 voxels) or
    outside the field of view both co-registered scans acquired (the zero fill beyond it, as
    :func:`slicer.brain.acquired` finds it: a zero inside the head is tissue)."""
    allowed = ndimage.binary_dilation(load_mask(patient / "brain_mask.nii.gz")[0] > 0, iterations=3)
    for name in INPUTS["co-registered"]:
        allowed &= acquired(np.asarray(nib.load(patient / name).dataobj))
    labels, _ = ndimage.label(prediction)
    return len(np.unique(labels[(labels > 0) & ~allowed]))


def merge_exports(exports: list[Path], out: Path) -> Path:
    """One export folder of links to several exports' slices; every case of the others trains.

    The first export keeps its splits (its validation cases pick the best checkpoint); the
    real pairs it is merged with train on all their slices.
    """
    tables = []
    for position, export in enumerate(exports):
        table = read_manifest(export / "manifest.csv")
        target_split = table["split"] if position == 0 else pd.Series("train", index=table.index)
        for kind, ext in (("images", ".tif"), ("labels", ".txt"), ("masks", ".png")):
            for stem, split, target in zip(table["stem"], table["split"], target_split, strict=True):
                link = out / kind / target / f"{stem}{ext}"
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    os.symlink((export / kind / split / f"{stem}{ext}").resolve(), link)
        (out / "cases").mkdir(parents=True, exist_ok=True)
        for case_file in (export / "cases").iterdir():
            if not (out / "cases" / case_file.name).exists():
                os.symlink(case_file.resolve(), out / "cases" / case_file.name)
        tables.append(table.assign(split=target_split))
    merged_table = pd.concat(tables)
    merged_table.to_csv(out / "manifest.csv", index=False)
    write_train_listing(out, merged_table, seed=0)  # ultralytics' listing, over every export's slices
    first_yaml = next(exports[0].glob("*_long.yaml"))
    merged = out / "merged_long.yaml"
    merged.write_text(first_yaml.read_text().replace(str(exports[0].resolve()), str(out.resolve())))
    return merged


def _export(options: ExportOptions) -> Path:
    summary = export_dataset(options)
    print(summary.line())
    return Path(options.out)


def phantom_export(work: Path, args: argparse.Namespace) -> Path:
    root = work / "phantom"
    write_phantom(root, cases=args.phantom_cases, voxel=args.phantom_voxel, seed=args.seed, realistic=True,
                  slice_thickness=args.slice_thickness)  # fmt: skip
    return _export(
        ExportOptions(
            dataset="phantom",
            root=root,
            out=work / "export_phantom",
            spacing=args.spacing,
            drop_empty_fraction=0.8,
            seed=args.seed,
        )  # fmt: skip
    )


def real_export(dataset: str, root: Path, out: Path, args: argparse.Namespace, **extra: object) -> Path:
    return _export(ExportOptions(dataset=dataset, root=root, out=out, spacing=args.spacing,
                                 drop_empty_fraction=0.8, seed=args.seed, **extra))  # fmt: skip


def linked_root(folder: Path, links: dict[str, Path]) -> Path:
    """A dataset root of links (case id -> a case folder elsewhere), to export a chosen set of cases."""
    folder.mkdir(parents=True, exist_ok=True)
    for case, target in links.items():
        if not (folder / case).exists():
            os.symlink(target.resolve(), folder / case)
    return folder


def single_pair_root(root: Path, patient: str, work: Path) -> Path:
    """A dataset root holding one real pair, to export it alone."""
    return linked_root(work / f"root_{patient}", {patient: root / "longitudinal" / patient})


def pseudo_root(
    root: Path, draws: int, thickness: float | None, work: Path, seed: int, purpose: str = "cross"
) -> Path:
    """Pseudo pairs of the single-time-point scans, written in the longitudinal layout.

    ``draws`` pairs per scan (case ids ``patient07``, ``patient07_d1``...): each case id seeds
    its evolution as ``slicer export --simulate-evolution`` would, so every draw erases or grows
    other lesions, and t0 is re-acquired (noise of its own). With ``thickness`` both scans and
    the new-lesion mask are then acquired again with thick axial slices
    (:func:`simulation.phantom.acquisition.thicken`, as the realistic phantom): the real pairs are
    2D FLAIR with 3-4 mm slices, the single scans 1 mm, and a new lesion's contrast depends on
    the partial volume of its slice. ``purpose`` names the folder: pairs drawn with another
    seed to tune an operating point (``held_out``) never mix with those trained on.
    """
    folder = work / (f"root_{purpose}_{draws}" + (f"_{thickness:g}mm" if thickness else ""))
    scans = sorted(path for path in (root / "cross_sectional").iterdir() if path.is_dir())
    for scan, draw in ((scan, draw) for scan in scans for draw in range(draws)):
        case = folder / (f"{scan.name}_d{draw}" if draw else scan.name)
        if (case / "ground_truth.nii.gz").is_file():  # written last
            continue
        t1, img = load_volume(scan / "FLAIR.nii.gz")
        spacing = spacing_of(img.affine)
        t0, new, _ = simulate_evolution(t1, load_mask(scan / "consensus.nii.gz")[0], spacing,
                                        case_seed(seed, case.name), drift=EVOLUTION_DRIFT, reacquire=True)  # fmt: skip
        count = slices_per_thick(float(spacing[2]), thickness) if thickness else 1
        kept = slice(0, t1.shape[2] // count * count)
        affine = thick_affine(img.affine, count)
        for name, volume in zip(INPUTS["co-registered"], (t0, t1), strict=True):
            save_nifti(thicken(volume[..., kept], count), affine, case / name)
        reference = thicken(new[..., kept].astype(np.float32), count) >= MASK_FRACTION
        save_nifti(reference.astype(np.uint8), affine, case / "ground_truth.nii.gz")
    return folder


def transplant_root(root: Path, pairs: tuple[str, ...], draws: range, work: Path, seed: int) -> Path:
    """Real lesions transplanted into real pairs, written in the longitudinal layout.

    Each draw gives two cases per pair (``fusion.verify_train.drawn_cases``, as the verifier
    trains on): the pair forward with lesions added to its follow-up (label: its own new lesions
    and the added ones), and the pair in reverse time with lesions added (its own new lesions now
    vanish: real change that is no new lesion). Donors are the single-time-point scans' lesions
    and the pairs' own new lesions; nothing of another real pair enters.
    """
    folder = work / f"root_transplant_{'+'.join(pairs)}_d{draws.start}-{draws.stop - 1}"
    cases = {case.id: case for case in load_dataset("ljubljana_long", root / "longitudinal")}
    cross = list(load_dataset("ljubljana_cross", root / "cross_sectional"))
    for pair in pairs:
        names = [f"{pair}_{direction}_d{draw}" for draw in draws for direction in ("forward", "reversed")]
        if all((folder / name / "ground_truth.nii.gz").is_file() for name in names):
            continue
        real = read_pair(cases[pair])
        for name, t1, t0, label in drawn_cases(real, donors_of([*cross, cases[pair]]), list(draws), seed):
            for file, volume in zip(INPUTS["co-registered"], (t0, t1), strict=True):
                save_nifti(volume, real.image.affine, folder / name / file)
            save_nifti(real.brain.astype(np.uint8), real.image.affine, folder / name / "brain_mask.nii.gz")
            save_nifti(label, real.image.affine, folder / name / "ground_truth.nii.gz")  # written last
    return folder


def lesion_free_root(root: Path, pairs: tuple[str, ...], work: Path) -> Path:
    """Real pairs with their new lesions erased from the follow-up
    (:func:`simulation.evolution.erase_lesions`): two real sessions, no new lesion; negatives."""
    folder = work / f"root_lesion_free_{'+'.join(pairs)}"
    for pair in pairs:
        case = folder / f"{pair}_lesion_free"
        if (case / "ground_truth.nii.gz").is_file():  # written last
            continue
        source = root / "longitudinal" / pair
        t1, image = load_volume(source / INPUTS["co-registered"][1])
        reference = load_mask(source / "ground_truth.nii.gz")[0]
        save_nifti(erase_lesions(t1, reference, spacing_of(image.affine)), image.affine,
                   case / INPUTS["co-registered"][1])  # fmt: skip
        for name in (INPUTS["co-registered"][0], "brain_mask.nii.gz"):
            save_nifti(np.asarray(nib.load(source / name).dataobj), image.affine, case / name)
        save_nifti(np.zeros(reference.shape, np.uint8), image.affine, case / "ground_truth.nii.gz")
    return folder


def trained(name: str, exports: list[Path], work: Path, args: argparse.Namespace) -> dict[str, Path]:
    data = merge_exports(exports, work / f"train_{name}")
    options = DemoOptions(out=work / f"models_{name}", voxel=args.spacing, seed=args.seed,
                          unext_epochs=args.unext_epochs, yolo_epochs=args.yolo_epochs, device=args.device)  # fmt: skip
    return train_models(options, data, args.models)


def transplant_trained(pairs: tuple[str, ...], work: Path, args: argparse.Namespace) -> Path:
    """UNeXt trained on lesions transplanted into real pairs and on pseudo pairs of the
    single-time-point scans (``--lesion-free``: and on the pairs with their new lesions erased),
    in small crops around lesions: more steps per CPU second than whole slices. One more
    transplant draw of each pair picks the checkpoint. Returns its best.pt."""
    from unext_long.train import TrainOptions, train

    name = "+".join(pairs) + ("_lesion_free" if args.lesion_free else "")
    best = work / f"models_transplant_{name}" / "unext" / "weights" / "best.pt"
    if best.is_file():
        return best
    draws = args.transplant_draws
    val, train_draws = (transplant_root(args.root, pairs, span, work, args.seed)
                        for span in (range(draws, draws + 1), range(draws)))  # fmt: skip
    pseudo = pseudo_root(args.root, args.pseudo_draws, args.pseudo_thickness, work, args.seed)
    # The first export's split is the merged one's; the others all train (merge_exports).
    roots = {val: "val", train_draws: "train", pseudo: None}
    if args.lesion_free:
        roots[lesion_free_root(args.root, pairs, work)] = "train"
    exports = [real_export("ljubljana_long", folder, work / f"export_{folder.name}", args, split=split)
               for folder, split in roots.items()]  # fmt: skip
    merged = merge_exports(exports, work / f"train_transplant_{name}")
    data = training_data(DemoOptions(seed=args.seed, val_slices=VAL_SLICES), merged)
    result = train(TrainOptions(
        data=data, epochs=args.unext_epochs, imgsz=args.crop_size, batch=32, stem="siamese", size="unext",
        lesion_fraction=DemoOptions.unext_lesion_fraction, time_limit=args.train_minutes,
        project=best.parents[2], name="unext", overwrite=True, seed=args.seed, device=args.device or "auto",
        workers=1,
    ))  # fmt: skip
    return result.run_dir / "weights" / "best.pt"


def _transplant_networks(row: str, work: Path, args: argparse.Namespace) -> list[dict]:
    """Each pair scored by the UNeXt trained on transplants into the *other* pair, at the
    defaults or (``transplant-tuned``) at the operating point with the best lesion F1 on the
    other pair's held-out transplant draw: the scored pair gives nothing to its model. The
    ``shipped`` row's UNeXt trains on both pairs (the recipe of the model in the package) and
    is reported as having seen them."""
    records = []
    # The label names the variant, so that its masks are cached apart from another's, as its model is.
    method = "UNeXt, lesion-free copies too" if args.lesion_free else "UNeXt"
    for patient, other in (PATIENTS, PATIENTS[::-1]):
        weights = [transplant_trained(PATIENTS if row == "shipped" else (other,), work, args)]
        setting = {}
        if row == "transplant-tuned":
            draws = range(args.transplant_draws, args.transplant_draws + 1)
            held_out = sorted(transplant_root(args.root, (other,), draws, work, args.seed).iterdir())
            setting = _best_setting(held_out, method, weights, NETWORK_GRID, work, args)
        records += _scored_setting(row, method, patient, weights, setting, work, args)
    return records


def _model_sets(trained_models: set[str]) -> dict[str, tuple[str, ...]]:
    """The model sets of MODEL_SETS whose networks were all trained."""
    return {label: names for label, names in MODEL_SETS.items() if set(names) <= trained_models}


def _scores(row: str, models: dict[str, dict[str, Path]], work: Path, args: argparse.Namespace,
            validation: dict[str, dict[str, Path]] | None = None) -> list[dict]:  # fmt: skip
    """One record per (model set, patient, input); ``models`` maps a patient to its weights and
    ``validation`` to their predictions of their export's validation cases: each set of several
    models is then scored twice, every model alike (triplanar) and by the lead rule."""
    records = []
    sets = {BASELINE: ()} if row == "baseline" else _model_sets(set(args.models))
    for label, names in sets.items():
        for patient in PATIENTS:
            weights = [models[patient][name] for name in names]
            records += _scored_setting(row, label, patient, weights, {}, work, args)
            if len(names) > 1 and validation:
                folders = [validation[patient][name] for name in names]
                records += _scored_setting(
                    row, f"{label} lead", patient, weights, {}, work, args, None, folders
                )
    return records


def validated(name: str, weights: dict[str, Path], work: Path, args: argparse.Namespace) -> dict[str, Path]:
    """The models' predictions of their training export's validation cases (the lead rule's evidence)."""
    return predict_split(work / f"train_{name}", weights, work / f"val_{name}", device=args.device)


def _label(setting: dict[str, float]) -> str:
    return "_".join(f"{key}{value:g}" for key, value in setting.items()) or "defaults"


def _best_setting(pairs: list[Path], method: str, weights: list[Path], grid: list[dict[str, float]],
                  work: Path, args: argparse.Namespace) -> dict[str, float]:  # fmt: skip
    """The setting of ``grid`` with the best mean lesion F1 of ``method`` on these pairs
    (co-registered input; ties go to the later, stricter setting)."""
    tag = method.replace(" ", "")
    f1 = [
        np.mean([score_pair(pair, "co-registered", weights,
                            work / "seg" / "tune" / tag / f"{pair.parent.name}_{pair.name}_{_label(setting)}.nii.gz",
                            args.spacing, **setting)["f1"] for pair in pairs])
        for setting in grid
    ]  # fmt: skip
    best = max(range(len(grid)), key=lambda i: (f1[i], i))
    names = ", ".join(pair.name for pair in pairs)
    print(f"{_label(grid[best])}: mean lesion F1 on {names}: "
          + ", ".join(f"{_label(setting)}: {value:.3f}" for setting, value in zip(grid, f1, strict=True)))  # fmt: skip
    return grid[best]


def _calibrated_baseline(row: str, work: Path, args: argparse.Namespace) -> list[dict]:
    """The baseline with its z threshold chosen on other pairs: on the *other* real pair
    (``calibrated``) or on the pseudo pairs of the single-time-point scans (``pseudo-calibrated``),
    so no pair is scored with a threshold tuned on it."""
    records, longitudinal = [], args.root / "longitudinal"
    grid = [{"baseline_z": z} for z in Z_GRID]
    if row == "pseudo-calibrated":
        pseudo = pseudo_root(args.root, args.pseudo_draws, args.pseudo_thickness, work, args.seed)
        chosen = _best_setting(sorted(pseudo.iterdir()), BASELINE, [], grid, work, args)
    for patient, other in (PATIENTS, PATIENTS[::-1]):
        if row == "calibrated":
            chosen = _best_setting([longitudinal / other], BASELINE, [], grid, work, args)
        records += _scored_setting(row, BASELINE, patient, [], chosen, work, args)
    return records


def _scored_setting(row: str, method: str, patient: str, weights: list[Path], setting: dict[str, float],
                    work: Path, args: argparse.Namespace, verifier: Path | str | None = None,
                    validation: list[Path] | None = None) -> list[dict]:  # fmt: skip
    """One record per input of one real pair, segmented at ``setting`` (or by ``verifier``, or
    fused by the lead rule on ``validation``)."""
    records = []
    for source in INPUTS:
        out = work / "seg" / row / method.replace(" ", "") / f"{patient}_{source}_{_label(setting)}.nii.gz"
        started = time.perf_counter()
        scores = score_pair(args.root / "longitudinal" / patient, source, weights, out, args.spacing, verifier,
                            validation, **setting)  # fmt: skip
        records.append({"row": row, "method": method, "patient": patient, "input": source,
                        "seconds": time.perf_counter() - started, "setting": _label(setting), **scores})  # fmt: skip
    return records


def _verified(row: str, work: Path, args: argparse.Namespace) -> list[dict]:
    """The baseline's candidates checked by a lesion verifier trained without the scored pair: on
    transplants into the *other* real pair and into pseudo pairs of the single-time-point scans
    (leave one pair out; donors: those scans' lesions and the other pair's own)."""
    records = []
    for patient, other in (PATIENTS, PATIENTS[::-1]):
        records += _scored_setting(
            row, VERIFIED, patient, [], {}, work, args, _pair_verifier(other, work, args)
        )
    return records


def _pair_verifier(pair: str, work: Path, args: argparse.Namespace) -> Path:
    """A verifier trained on transplants into one real pair and into the pseudo pairs of the
    single-time-point scans (real tissue, lesions erased at a simulated baseline, 3 mm slices)."""
    out = work / f"verifier_{pair}.npz"
    if not out.is_file():
        real = [
            case for case in load_dataset("ljubljana_long", args.root / "longitudinal") if case.id == pair
        ]
        pseudo = load_dataset("ljubljana_long", pseudo_root(args.root, 1, 3.0, work, args.seed), check=False)
        pairs = tuple(real + [replace(case, brain_mask=None) for case in pseudo])
        donors = tuple(load_dataset("ljubljana_cross", args.root / "cross_sectional"))
        train_from_datasets(TrainingPlan(pairs, donors, out, spacing=args.spacing,
                                         seed=args.seed, cache=work / "verifier_cache"))  # fmt: skip
    return out


def _tuned_networks(weights: dict[str, Path], work: Path, args: argparse.Namespace) -> list[dict]:
    """The pseudo row's networks at an operating point (probability threshold, votes) chosen on
    pseudo pairs held out from training (other draws of the single-time-point scans)."""
    held_out = pseudo_root(args.root, 1, args.pseudo_thickness, work, args.seed + HELD_OUT_SEED, "held_out")
    records = []
    for label, names in _model_sets(set(weights)).items():
        chosen_weights = [weights[name] for name in names]
        chosen = _best_setting(sorted(held_out.iterdir()), label, chosen_weights, NETWORK_GRID, work, args)
        for patient in PATIENTS:
            records += _scored_setting("pseudo-tuned", label, patient, chosen_weights, chosen, work, args)
    return records


ROW_TITLES = {
    "baseline": "",
    "verified": "leave one pair out (trained on the other pair)",
    "calibrated": "z chosen on the other pair",
    "pseudo-calibrated": "z chosen on the pseudo pairs",
    "phantom": "trained on the realistic phantom",
    "pseudo": "trained on the phantom + pseudo pairs of the 2 real single-time-point scans",
    "pseudo-tuned": "the same, operating point chosen on held-out pseudo pairs",
    "pair": "trained on the phantom + the other real pair",
    "transplant": "trained on transplants into the other pair + pseudo pairs",
    "transplant-tuned": "the same, operating point chosen on a held-out transplant draw",
    "shipped": "the shipped model's recipe: transplants into both pairs (it saw them)",
}


def _by_size(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and input, ``detected / lesions`` per size bin, summed over the pairs."""
    rows = [{"method": record.method, "input": record.input, **size}
            for record in table.itertuples() for size in record.by_size]  # fmt: skip
    sums = (
        pd.DataFrame(rows).groupby(["method", "input", "size_mm3"], sort=False)[["detected", "lesions"]].sum()
    )
    cells = sums["detected"].astype(str) + " / " + sums["lesions"].astype(str)
    return cells.unstack("size_mm3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, required=True, help="the ljubljana folder (longitudinal/, cross_sectional/)"
    )
    parser.add_argument("--work", type=Path, default=Path("benchmarks/output/real"),
                        help="reruns reuse its exports, models and masks: other settings need another folder")  # fmt: skip
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--models", nargs="+", default=["unext", "yolo"], choices=["unext", "yolo"])
    parser.add_argument("--spacing", type=float, default=1.5, help="export and segmentation spacing, mm")
    parser.add_argument("--phantom-cases", type=int, default=12)
    parser.add_argument("--phantom-voxel", type=float, default=1.0, help="in-plane voxel of the phantom, mm")
    parser.add_argument("--slice-thickness", type=float, default=3.0, help="the phantom's slices, mm")
    parser.add_argument("--unext-epochs", type=int, default=DemoOptions.unext_epochs)
    parser.add_argument("--yolo-epochs", type=int, default=DemoOptions.yolo_epochs)
    parser.add_argument("--pseudo-draws", type=int, default=1,
                        help="pseudo pairs drawn from each single-time-point scan (the pseudo row)")  # fmt: skip
    parser.add_argument("--pseudo-thickness", type=float, default=None,
                        help="acquire the pseudo pairs again with axial slices this thick, mm (default: as scanned)")  # fmt: skip
    parser.add_argument("--transplant-draws", type=int, default=4,
                        help="draws of transplants into the other real pair that train (the transplant row)")  # fmt: skip
    parser.add_argument("--lesion-free", action="store_true",
                        help="the transplant row also trains on the other pair with its new lesions erased")  # fmt: skip
    parser.add_argument(
        "--crop-size", type=int, default=64, help="side of the transplant row's training crops"
    )
    parser.add_argument("--train-minutes", type=float, default=None,
                        help="the transplant row's training time limit (its schedule shortens to fit)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    started, work = time.perf_counter(), args.work
    records = []
    for row in args.rows:
        if row in ("calibrated", "pseudo-calibrated"):
            records += _calibrated_baseline(row, work, args)
            continue
        if row == "verified":
            records += _verified(row, work, args)
            continue
        models: dict[str, dict[str, Path]] = {patient: {} for patient in PATIENTS}
        validation: dict[str, dict[str, Path]] = {}
        if row in ("transplant", "transplant-tuned", "shipped"):
            records += _transplant_networks(row, work, args)
            continue
        if row != "baseline":
            phantom = phantom_export(work, args)
        if row in ("phantom", "pseudo", "pseudo-tuned"):
            extra = []
            if row != "phantom":
                pseudo = pseudo_root(args.root, args.pseudo_draws, args.pseudo_thickness, work, args.seed)
                extra = [real_export("ljubljana_long", pseudo, work / f"export_{pseudo.name}", args)]
            weights = trained(row.removesuffix("-tuned"), [phantom, *extra], work, args)
            if row == "pseudo-tuned":
                records += _tuned_networks(weights, work, args)
                continue
            models = {patient: weights for patient in PATIENTS}
            folders = validated(row, weights, work, args)
            validation = {patient: folders for patient in PATIENTS}
        elif row == "pair":
            for patient, other in (PATIENTS, PATIENTS[::-1]):
                export = real_export("ljubljana_long", single_pair_root(args.root, other, work),
                                     work / f"export_{other}", args)  # fmt: skip
                models[patient] = trained(f"pair_{other}", [phantom, export], work, args)
                validation[patient] = validated(f"pair_{other}", models[patient], work, args)
        records += _scores(row, models, work, args, validation)
    table = pd.DataFrame(records)
    table.to_csv(work / "scores.csv", index=False)
    titles = {**ROW_TITLES, "pseudo": ROW_TITLES["pseudo"] + (
        f", {args.pseudo_draws} draws each" if args.pseudo_draws > 1 else "")}  # fmt: skip
    table["method"] = [
        f"{m}, {titles[r]}" if titles[r] else m for m, r in zip(table["method"], table["row"], strict=True)
    ]
    columns = ["dice", "f1", "sensitivity", "precision", "fp_lesions"]
    mean = table.pivot_table(index="method", columns="input", values=columns, aggfunc="mean", sort=False)
    print(f"\n## Real pairs ({', '.join(PATIENTS)}), mean of the two, MSSEG-2 rules, {args.spacing} mm")
    print(mean.round(3).to_string())
    print("\n## Per patient")
    shown = columns + ["lesions_outside_brain", "seconds", "setting"]
    print(table.set_index(["method", "patient", "input"])[shown].round(3).to_string())
    print("\n## Sensitivity by reference lesion size, both pairs (detected / lesions)")
    print(_by_size(table).to_string())
    print("\n## Rigid registration of the raw pairs against the database's transforms (mm over the head)")
    for patient in PATIENTS:
        median, p95 = registration_error(args.root / "longitudinal" / patient)
        print(f"{patient}: median {median:.2f}, 95th percentile {p95:.2f}")
    print(f"\nbench_real: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
