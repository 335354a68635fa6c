"""Evaluating a folder against the phantom's consensus and raters: tables, figures, bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fusion.evaluate import EvaluateOptions, evaluate, summary_line
from slicer.datasets import load_dataset

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


def test_a_missed_lesion_and_a_false_positive(
    phantom_root: Path, perfect_preds: Path, tmp_path: Path
) -> None:
    cases = load_dataset("phantom", root=phantom_root)
    empty = next(c for c in cases if not np.asarray(nib.load(c.consensus).dataobj).any())
    preds = shutil.copytree(perfect_preds, tmp_path / "preds")
    img = nib.load(empty.consensus)
    fp = np.zeros(img.shape, np.uint8)
    fp[10:12, 10:12, 10:12] = 1  # 8 voxels of 2 mm: 64 mm³
    nib.save(nib.Nifti1Image(fp, img.affine), preds / f"{empty.id}.nii.gz")
    evaluate(
        EvaluateOptions(
            pred=preds, dataset="phantom", root=phantom_root, out=tmp_path / "eval", figures=False
        )
    )
    row = pd.read_csv(tmp_path / "eval" / "metrics.csv").query(
        "case == @empty.id and reference == 'consensus'"
    )
    assert (int(row["fp_lesions"].iloc[0]), float(row["fp_volume_mm3"].iloc[0])) == (1, 64.0)
    assert not (tmp_path / "eval" / "figures").exists()


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
