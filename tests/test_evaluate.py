"""Evaluating a folder against the phantom's consensus and raters: tables, figures, bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fusion.evaluate import LESION_COLUMNS, EvaluateOptions, detection_by_size, evaluate, summary_line
from fusion.metrics import Lesions
from slicer.datasets import Case, load_dataset

LESION_EVAL = str(Path(sys.executable).with_name("lesion-eval"))


@pytest.fixture(scope="module")
def perfect_preds(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The consensus itself, as a prediction folder."""
    preds = tmp_path_factory.mktemp("perfect")
    for case in load_dataset("phantom", root=phantom_root):
        shutil.copy(case.consensus, preds / f"{case.id}.nii.gz")
    return preds


def test_consensus_scores_perfectly(phantom_root: Path, perfect_preds: Path, tmp_path: Path) -> None:
    table = evaluate(
        EvaluateOptions(pred=perfect_preds, dataset="phantom", root=phantom_root, out=tmp_path, workers=1)
    )
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    cases = load_dataset("phantom", root=phantom_root)
    assert len(metrics) == len(cases) * (1 + len(cases[0].raters))  # one row per case x reference
    consensus = metrics[metrics["reference"] == "consensus"]
    with_lesions = consensus[consensus["ref_lesions"] > 0]
    assert len(with_lesions) >= 1 and (with_lesions[["dice", "f1"]] == 1.0).all().all()
    empty = consensus[consensus["ref_lesions"] == 0]
    assert empty["dice"].isna().all() and (empty["fp_lesions"] == 0).all()
    inter = pd.read_csv(tmp_path / "inter_rater.csv")
    assert set(inter["segmentation"]) == {f"rater{i}" for i in range(1, len(cases[0].raters) + 1)}
    summary = (tmp_path / "summary.md").read_text()
    assert "## Per scanner" in summary and "## Inter-rater" in summary and "| rater1 |" in summary
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == sorted([f"{c.id}.png" for c in cases] + ["scores.png"])
    assert summary_line(table).startswith(f"{len(cases)} cases, Dice 1.000, F1 1.000, 0 FP lesions")


@dataclass(frozen=True)
class Flawed:
    """An evaluation of the consensus with one lesion dropped and one false positive added."""

    out: Path
    empty: Case  # the case without new lesion, given a 64 mm³ false positive at voxels 10-11
    busiest: Case  # the case with the most lesions, its smallest one dropped
    truth: Lesions  # the busiest case's consensus lesions


def _lesions_of(path: Path) -> Lesions:
    img = nib.load(path)
    return Lesions.of(np.asarray(img.dataobj), img.header.get_zooms()[:3])


@pytest.fixture(scope="module")
def flawed(phantom_root: Path, perfect_preds: Path, tmp_path_factory: pytest.TempPathFactory) -> Flawed:
    tmp = tmp_path_factory.mktemp("flawed")
    cases = load_dataset("phantom", root=phantom_root)
    preds = shutil.copytree(perfect_preds, tmp / "preds")
    empty = next(c for c in cases if not np.asarray(nib.load(c.consensus).dataobj).any())
    img = nib.load(empty.consensus)
    fp = np.zeros(img.shape, np.uint8)
    fp[10:12, 10:12, 10:12] = 1  # 8 voxels of 2 mm: 64 mm³
    nib.save(nib.Nifti1Image(fp, img.affine), preds / f"{empty.id}.nii.gz")
    busiest = max(cases, key=lambda c: _lesions_of(c.consensus).n)
    truth = _lesions_of(busiest.consensus)
    missed = np.where(truth.labels == truth.n, 0, truth.labels > 0).astype(np.uint8)  # drop the smallest
    nib.save(nib.Nifti1Image(missed, nib.load(busiest.consensus).affine), preds / f"{busiest.id}.nii.gz")
    options = EvaluateOptions(
        pred=preds, dataset="phantom", root=phantom_root, out=tmp / "eval", figures=False
    )
    evaluate(options)
    return Flawed(tmp / "eval", empty, busiest, truth)


def test_a_missed_lesion_and_a_false_positive(flawed: Flawed) -> None:
    metrics = pd.read_csv(flawed.out / "metrics.csv").query("reference == 'consensus'")
    row = metrics[metrics["case"] == flawed.empty.id]
    assert (int(row["fp_lesions"].iloc[0]), float(row["fp_volume_mm3"].iloc[0])) == (1, 64.0)
    row = metrics[metrics["case"] == flawed.busiest.id]
    assert int(row["detected"].iloc[0]) == flawed.truth.n - 1
    assert not (flawed.out / "figures").exists()


def test_lesions_csv_one_row_per_lesion(flawed: Flawed) -> None:
    metrics = pd.read_csv(flawed.out / "metrics.csv")
    lesions = pd.read_csv(flawed.out / "lesions.csv", keep_default_na=False)
    assert list(lesions.columns) == LESION_COLUMNS
    counted = lesions.groupby(["case", "reference", "kind"]).size()
    for score in metrics.itertuples():  # both sides' lesions, for every case x reference
        assert counted.get((score.case, score.reference, "reference"), 0) == score.ref_lesions
        assert counted.get((score.case, score.reference, "prediction"), 0) == score.pred_lesions
    consensus = lesions[lesions["reference"] == "consensus"]
    fp = consensus[consensus["case"] == flawed.empty.id].iloc[0]
    assert (fp["kind"], fp["status"], fp["volume_mm3"], fp["matches"]) == (
        "prediction",
        "false positive",
        64.0,
        "",
    )
    centre = nib.affines.apply_affine(nib.load(flawed.empty.consensus).affine, [10.5, 10.5, 10.5])
    np.testing.assert_allclose(fp[["x_mm", "y_mm", "z_mm"]].astype(float), centre, atol=1e-4)  # world mm
    references = consensus.query("case == @flawed.busiest.id and kind == 'reference'")
    lost = references[references["status"] == "missed"]
    assert len(lost) == 1 and lost["matches"].iloc[0] == ""
    assert (lost["lesion"].iloc[0], lost["volume_mm3"].iloc[0]) == (
        flawed.truth.n,
        flawed.truth.sizes[-1] * 8.0,
    )
    found = references[references["status"] == "detected"]
    assert (found["matches"] == found["lesion"].astype(str)).all()  # same sizes, same numbering


def test_summary_tables_detection_by_lesion_size(flawed: Flawed) -> None:
    lesions = pd.read_csv(flawed.out / "lesions.csv", keep_default_na=False)
    table = detection_by_size(lesions).query("reference == 'consensus'").set_index("size_mm3")
    n_ref = int(
        pd.read_csv(flawed.out / "metrics.csv").query("reference == 'consensus'")["ref_lesions"].sum()
    )
    assert table["ref_lesions"].sum() == n_ref and table["detected"].sum() == n_ref - 1
    assert table["pred_lesions"].sum() == n_ref and table["true_positives"].sum() == n_ref - 1
    assert flawed.truth.sizes[-1] * 8.0 <= 10  # the dropped lesion: the phantom's smallest are one voxel
    assert table.loc["≤ 10", "detected"] == table.loc["≤ 10", "ref_lesions"] - 1
    assert table.loc["50–200", "pred_lesions"] == table.loc["50–200", "true_positives"] + 1  # the 64 mm³
    assert table.loc["> 200", "sensitivity"] == 1.0
    summary = (flawed.out / "summary.md").read_text()
    assert "## Detection by lesion size" in summary
    assert "| reference | size_mm3 | ref_lesions | detected | sensitivity | pred_lesions |" in summary
    assert all(f"| consensus | {size} |" in summary for size in ("≤ 10", "10–50", "50–200", "> 200"))


def _run(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LESION_EVAL, *arguments], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("wrong grid", "differs from flair_time02_on_middle_space.nii.gz"),
        ("unreadable", "unreadable NIfTI"),
        ("missing", "no prediction for case"),
        ("not binary", "mask is not binary"),
    ],
)
def test_bad_input_one_line_exit_2(
    phantom_root: Path, perfect_preds: Path, tmp_path: Path, kind: str, message: str
) -> None:
    preds = shutil.copytree(perfect_preds, tmp_path / "preds")
    target = sorted(preds.iterdir())[0]
    img = nib.load(target)
    if kind == "wrong grid":
        nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), img.affine), target)
    elif kind == "unreadable":
        target.write_bytes(b"not a nifti")
    elif kind == "missing":
        target.unlink()
    else:
        nib.save(nib.Nifti1Image(np.full(img.shape, 2, np.uint8), img.affine), target)
    out = tmp_path / "out"
    result = _run(
        ["--pred", str(preds), "--dataset", "phantom", "--root", str(phantom_root), "--out", str(out)]
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_cli_prints_one_summary_line(phantom_root: Path, perfect_preds: Path, tmp_path: Path) -> None:
    result = _run(
        [
            "--pred",
            str(perfect_preds),
            "--dataset",
            "phantom",
            "--root",
            str(phantom_root),
            "--out",
            str(tmp_path),
        ]
        + ["--no-figures", "--cases", "case001", "case002"]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("lesion-eval: 2 cases, Dice") and result.stdout.count("\n") == 1
    assert "lesions.csv" in result.stdout and (tmp_path / "lesions.csv").is_file()
