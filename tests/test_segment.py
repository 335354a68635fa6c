"""``mslong segment``: the one-patient command agrees with export + predict + reassemble."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from fusion.metrics import score_case
from fusion.reassemble import ReassembleOptions, reassemble
from mslong.models import Predictor
from mslong.segment import LESION_COLUMNS, model_planes, segment_patient
from runtime.errors import InputError
from runtime.lesions import count_lesions
from slicer.datasets import load_dataset
from slicer.io import load_mask

MSLONG = str(Path(sys.executable).with_name("mslong"))


@pytest.fixture(scope="module")
def unext_weights(phantom_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small UNeXt trained for one epoch: enough to make non-trivial probabilities."""
    from unext_long.train import TrainOptions, train

    result = train(
        TrainOptions(
            data=phantom_export / "phantom_long.yaml",
            epochs=1,
            imgsz=64,
            batch=8,
            size="unext-s",
            stem="siamese",
            max_slices=48,
            project=tmp_path_factory.mktemp("runs"),
            name="unext",
            workers=0,
            device="cpu",
        )
    )
    return result.run_dir / "weights" / "best.pt"


def _export_spacing(phantom_export: Path) -> float:
    return float(yaml.safe_load((phantom_export / "phantom_long.yaml").read_text())["mslong"]["spacing"])


def _val_case(phantom_export: Path) -> str:
    manifest = pd.read_csv(phantom_export / "manifest.csv")
    return sorted(manifest.loc[manifest["split"] == "val", "case"].unique())[0]


@pytest.fixture(scope="module")
def val_preds(phantom_export: Path, unext_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small UNeXt's predictions of the export's validation slices."""
    from unext_long.predict import predict_folder

    preds = tmp_path_factory.mktemp("val_preds") / "unext"
    predict_folder(unext_weights, phantom_export / "images" / "val", preds, device="cpu")
    return preds


def test_segment_matches_reassemble(
    phantom_root: Path, phantom_export: Path, unext_weights: Path, val_preds: Path, tmp_path: Path
):
    case_id = _val_case(phantom_export)
    case = next(c for c in load_dataset("phantom", root=phantom_root) if c.id == case_id)
    preds = val_preds
    reassemble(
        ReassembleOptions(slices=phantom_export, preds=[preds], out=tmp_path / "fused", cases=[case_id])
    )
    via_files = np.asarray(nib.load(tmp_path / "fused" / f"{case_id}.nii.gz").dataobj)

    out = tmp_path / "seg.nii.gz"
    result = segment_patient(
        case.t0,
        case.t1,
        out,
        [unext_weights],
        device="cpu",
        brain_mask_file=case.brain_mask,  # what the export's default (auto) used
    )
    assert result.spacing == _export_spacing(phantom_export) != 1.0  # the model's, not the default
    written = nib.load(out)
    t2 = nib.load(case.t1)
    assert written.shape == t2.shape and np.allclose(written.affine, t2.affine)
    in_memory = np.asarray(written.dataobj)
    assert result.new_lesion_voxels == int(in_memory.sum())
    consensus, _ = load_mask(case.consensus)
    spacing = t2.header.get_zooms()[:3]
    assert score_case(consensus, in_memory, spacing) == pytest.approx(
        score_case(consensus, via_files, spacing), nan_ok=True
    )
    assert np.array_equal(in_memory, via_files)
    lesions = pd.read_csv(tmp_path / "seg_lesions.csv")
    assert list(lesions.columns) == list(LESION_COLUMNS) and len(lesions) == result.new_lesions
    voxel_mm3 = float(np.prod(spacing))
    assert lesions["volume_mm3"].sum() == pytest.approx(in_memory.sum() * voxel_mm3)
    assert lesions["mean_probability"].between(0, 1).all()


def test_segment_on_one_plane_matches_reassemble_on_it(
    phantom_root: Path, phantom_export: Path, unext_weights: Path, val_preds: Path, tmp_path: Path
):
    case_id = _val_case(phantom_export)
    case = next(c for c in load_dataset("phantom", root=phantom_root) if c.id == case_id)
    fused = tmp_path / "fused"
    reassemble(
        ReassembleOptions(
            slices=phantom_export, preds=[val_preds], out=fused, cases=[case_id], orientations=("axial",)
        )
    )
    out = tmp_path / "seg.nii.gz"
    segment_patient(
        case.t0, case.t1, out, [unext_weights], orientations=("axial",), brain_mask_file=case.brain_mask
    )
    axial = np.asarray(nib.load(out).dataobj)
    assert np.array_equal(axial, np.asarray(nib.load(fused / f"{case_id}.nii.gz").dataobj))
    segment_patient(
        case.t0, case.t1, tmp_path / "all.nii.gz", [unext_weights], brain_mask_file=case.brain_mask
    )
    assert not np.array_equal(axial, np.asarray(nib.load(tmp_path / "all.nii.gz").dataobj))


def test_a_model_votes_on_the_planes_it_was_trained_on() -> None:
    def model(export: dict) -> Predictor:
        return Predictor("unext:m", ("t1",), 0, None, 0.5, export=export)

    assert model_planes(model({})) == ("axial", "coronal", "sagittal")  # a checkpoint that does not say
    assert model_planes(model({"orientations": ["axial"]})) == ("axial",)
    assert model_planes(model({}), ("sagittal", "axial")) == ("axial", "sagittal")
    with pytest.raises(InputError, match="--orientations: unext:m was trained on axial slices only"):
        model_planes(model({"orientations": ["axial"]}), ("coronal",))


def test_segment_list_loads_models_once(
    phantom_root: Path, unext_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import mslong.models
    from mslong.batch import segment_list

    cases = load_dataset("phantom", root=phantom_root)[:3]
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame(
        {"case": [c.id for c in cases], "t1": [c.t0 for c in cases], "t2": [c.t1 for c in cases]}
    ).to_csv(pairs, index=False)
    loads = []
    real = mslong.models.load_predictor
    monkeypatch.setattr(mslong.models, "load_predictor", lambda *a, **k: loads.append(a) or real(*a, **k))
    out = tmp_path / "batch"
    table = segment_list(pairs, out, [unext_weights], device="cpu", brain_mask_mode="none")
    assert len(loads) == 1 and list(table["case"]) == [c.id for c in cases]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(f"{c.id}.nii.gz" for c in cases)
    for case, row in zip(cases, table.itertuples(), strict=True):
        lesions = pd.read_csv(out / f"{case.id}_lesions.csv")
        mask, img = load_mask(out / f"{case.id}.nii.gz")
        assert len(lesions) == row.new_lesions == count_lesions(mask, img.header.get_zooms()[:3])
    assert pd.read_csv(out / "summary.csv", dtype={"case": str}).equals(table)
    stamps = [path.stat().st_mtime_ns for path in sorted(out.glob("*.nii.gz"))]
    again = segment_list(pairs, out, [unext_weights], device="cpu", brain_mask_mode="none")
    assert again.equals(table) and stamps == [p.stat().st_mtime_ns for p in sorted(out.glob("*.nii.gz"))]
    process = _run("--list", pairs, "--out", out, "--brain-mask", "none", "--baseline-z", "5")
    _assert_one_line_error(process, "was made with other")  # the subtraction baseline: other settings


def test_segment_refuses_an_ensemble_sliced_two_ways(phantom_root: Path, unext_weights: Path, tmp_path: Path):
    import torch

    checkpoint = torch.load(unext_weights, weights_only=True)
    config = json.loads(checkpoint["config"])
    config["export"] = {**config["export"], "spacing": 1.5}
    checkpoint["config"] = json.dumps(config)
    other = tmp_path / "other.pt"
    torch.save(checkpoint, other)
    case = load_dataset("phantom", root=phantom_root)[0]
    out = tmp_path / "seg.nii.gz"
    process = _run("-t1", case.t0, "-t2", case.t1, "-o", out, "--weights", unext_weights, other)
    _assert_one_line_error(process, "was trained with spacing 1.5")
    assert not out.exists()


def test_segment_without_weights_runs_the_subtraction_baseline(phantom_root: Path, tmp_path: Path):
    # The subtraction baseline needs no training: run it at the phantom's own 2 mm voxels.
    cases = load_dataset("phantom", root=phantom_root)
    case = max(cases, key=lambda c: load_mask(c.consensus)[0].sum())
    out = tmp_path / "seg.nii.gz"
    result = segment_patient(case.t0, case.t1, out, device="cpu", spacing=2.0)
    assert result.models == ("subtraction",)
    consensus, img = load_mask(case.consensus)
    scores = score_case(consensus, np.asarray(nib.load(out).dataobj), img.header.get_zooms()[:3])
    assert scores["dice"] > 0.3
    # A lower z threshold (--baseline-z) keeps more of the brightening.
    looser = segment_patient(
        case.t0, case.t1, tmp_path / "z4.nii.gz", device="cpu", spacing=2.0, baseline_z=4.0
    )
    assert looser.new_lesion_voxels > result.new_lesion_voxels


def _run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MSLONG, "segment", *map(str, args)], capture_output=True, text=True, timeout=300)


def _assert_one_line_error(process: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in process.stderr
    assert fragment in lines[0]


def test_segment_bad_inputs(phantom_root: Path, tmp_path: Path):
    case = load_dataset("phantom", root=phantom_root)[0]
    out = tmp_path / "seg.nii.gz"

    _assert_one_line_error(
        _run("-t1", tmp_path / "missing.nii.gz", "-t2", case.t1, "-o", out), "missing.nii.gz"
    )

    img = nib.load(case.t1)
    four_d = tmp_path / "four_d.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([np.asarray(img.dataobj)] * 2, -1), img.affine), four_d)
    _assert_one_line_error(_run("-t1", case.t0, "-t2", four_d, "-o", out), "4D")

    # Another subject's scan, on its own grid far from this one: the fields of view do not overlap.
    elsewhere = img.affine.copy()
    elsewhere[:3, 3] += 400.0
    other = tmp_path / "other_subject.nii.gz"
    nib.save(
        nib.Nifti1Image(
            np.asarray(nib.load(load_dataset("phantom", root=phantom_root)[1].t0).dataobj), elsewhere
        ),
        other,
    )
    _assert_one_line_error(_run("-t1", other, "-t2", case.t1, "-o", out), "other_subject.nii.gz")
    _assert_one_line_error(
        _run("-t1", case.t0, "-t2", case.t1, "-o", out, "--weights", "none", "shipped"), "give it alone"
    )
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_segment_threshold_per_model(phantom_root: Path, unext_weights: Path, tmp_path: Path):
    case = load_dataset("phantom", root=phantom_root)[0]
    out = tmp_path / "seg.nii.gz"
    process = _run(
        "-t1", case.t0, "-t2", case.t1, "-o", out, "--weights", unext_weights, "--threshold", "0.5", "0.3"
    )
    _assert_one_line_error(process, "give one threshold, or one per model (1), not 2")
    assert not out.exists()


def test_profile_gives_the_seconds_of_every_stage(
    phantom_root: Path, unext_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from mslong.cli import main

    case = load_dataset("phantom", root=phantom_root)[0]
    out = tmp_path / "seg.nii.gz"
    args = ["segment", "-t1", case.t0, "-t2", case.t1, "-o", out, "--weights", unext_weights]
    main([*map(str, args), "--brain-mask-file", str(case.brain_mask), "--profile"])
    printed = capsys.readouterr().out
    stages = [line.split()[0] for line in printed.splitlines()[2:]]
    for name in ("load", "read", "brain", "registration", "resampling", "normalisation", "model", "fusion"):
        assert name in stages, printed
    total = float(printed.splitlines()[-1].split()[1])
    assert total > 0 and printed.splitlines()[-1].startswith("total")
    # The timing changes nothing: the same voxels as an untimed library call.
    again = segment_patient(case.t0, case.t1, tmp_path / "again.nii.gz", [unext_weights],
                            brain_mask_file=case.brain_mask)  # fmt: skip
    assert again.seconds and np.array_equal(
        np.asarray(nib.load(out).dataobj), np.asarray(nib.load(tmp_path / "again.nii.gz").dataobj)
    )


def test_segment_lead_rule_matches_reassemble(
    phantom_root: Path, phantom_export: Path, unext_weights: Path, val_preds: Path, tmp_path: Path
):
    case_id = _val_case(phantom_export)
    case = next(c for c in load_dataset("phantom", root=phantom_root) if c.id == case_id)
    preds = val_preds
    fused = tmp_path / "fused"
    reassemble(ReassembleOptions(slices=phantom_export, preds=[preds, preds], out=fused, cases=[case_id]))
    assert json.loads((fused / "provenance.json").read_text())["leader"] == 0
    out = tmp_path / "seg.nii.gz"
    segment_patient(case.t0, case.t1, out, [unext_weights] * 2, device="cpu", validation=[preds] * 2,
                    brain_mask_file=case.brain_mask)  # fmt: skip
    np.testing.assert_array_equal(
        np.asarray(nib.load(out).dataobj), np.asarray(nib.load(fused / f"{case_id}.nii.gz").dataobj)
    )
    other = shutil.copytree(preds, tmp_path / "other")
    record = json.loads((other / "provenance.json").read_text())
    (other / "provenance.json").write_text(json.dumps({**record, "weights_sha256": "0" * 64}))
    process = _run("-t1", case.t0, "-t2", case.t1, "-o", tmp_path / "x.nii.gz", "--weights", unext_weights,
                   unext_weights, "--validation", preds, other)  # fmt: skip
    _assert_one_line_error(process, "other weights")
    _assert_one_line_error(
        _run("-t1", case.t0, "-t2", case.t1, "-o", out, "--validation", preds), "--validation"
    )


def test_the_shipped_model_finds_new_lesions_of_a_phantom(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_network: None
):
    """``--weights shipped``: the model inside the package (trained on real scans, never on the
    phantom) runs with the network unreachable and is sure of the phantom's new lesions, not of
    the tissue around them."""
    from mslong.cli import main
    from mslong.models import SHIPPED_MODEL

    cases = load_dataset("phantom", root=phantom_root)
    case = max(cases, key=lambda c: load_mask(c.consensus)[0].sum())
    out = tmp_path / "seg.nii.gz"
    main(["segment", "-t1", str(case.t0), "-t2", str(case.t1), "-o", str(out), "--weights", "shipped",
          "--brain-mask-file", str(case.brain_mask), "--device", "cpu", "--save-prob"])  # fmt: skip
    assert f"by unext:{SHIPPED_MODEL.stem} ->" in capsys.readouterr().out
    consensus, img = load_mask(case.consensus)
    prob = np.asarray(nib.load(tmp_path / "seg_prob.nii.gz").dataobj)
    brain = load_mask(case.brain_mask)[0] > 0
    assert np.median(prob[consensus > 0]) > 5 * max(np.median(prob[brain & (consensus == 0)]), 0.01)
    scores = score_case(consensus, np.asarray(nib.load(out).dataobj), img.header.get_zooms()[:3])
    assert scores["sensitivity"] > 0.3
