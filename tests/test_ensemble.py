"""The lead rule: the model with the best validation record fuses (fusion.ensemble, fusion.record)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from fusion.cli import reassemble_main
from fusion.ensemble import leader_of
from fusion.reassemble import ReassembleOptions, reassemble
from fusion.record import member_leader, validation_record
from fusion.views import fuse_case, read_views
from fusion.voting import fuse_views
from runtime.errors import InputError
from runtime.predictions import encode_probability
from slicer.geometry import ORIENTATIONS, CaseGeometry, slice_image
from slicer.manifest import read_manifest
from slicer.writer import read_roi

PLANES = list(ORIENTATIONS)


def _record(f1: float | None, dice: float) -> dict:
    return {"cases": ["a"], "views": {"triplanar": {"f1": f1, "precision": 0.9, "dice": dice}}}


def test_the_leader_has_the_best_mean_of_f1_and_dice() -> None:
    assert leader_of([_record(0.4, 0.6), _record(0.7, 0.6), _record(0.5, 0.6)]) == 1
    # A slightly better F1 does not make up for much worse outlines.
    assert leader_of([_record(0.65, 0.71), _record(0.67, 0.55)]) == 0
    assert leader_of([_record(0.6, 0.5), _record(0.5, 0.6)]) == 0  # equal means: F1 decides
    assert leader_of([_record(0.6, 0.9), None]) is None
    assert leader_of([_record(0.6, 0.9), _record(None, 0.5)]) is None
    assert leader_of([None]) == 0


def test_lead_is_the_leaders_own_vote_exactly() -> None:
    rng = np.random.default_rng(0)
    leader = [ndimage.gaussian_filter(rng.random((20, 20, 20)), 2).astype(np.float32) for _ in PLANES]
    other = [np.maximum(view, 0.6 * (rng.random(view.shape) > 0.97)).astype(np.float32) for view in leader]
    level = float(np.quantile(leader[0], 0.9))
    expected = fuse_views(leader, "triplanar", None, level, 0, 1.0, PLANES)
    views, members = other + leader, [0, 0, 0, 1, 1, 1]
    got = fuse_case(views, "lead", None, level, 0, 1.0, planes=PLANES * 2, members=members, leader=1)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    # Each model at its own operating point: the leader's views on the common scale (0.5).
    calibrated = fuse_case(views, "lead", None, [0.3] * 3 + [level] * 3, 0, 1.0, planes=PLANES * 2,
                           members=members, leader=1)  # fmt: skip
    np.testing.assert_array_equal(calibrated[0], expected[0])
    with pytest.raises(ValueError, match="leader"):
        fuse_case(views, "lead", None, level, 0, 1.0, planes=PLANES * 2)


def _write_volume_pngs(volume: np.ndarray, rows, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows.itertuples(index=False):
        image = slice_image(volume, row.orientation, int(row.index))
        cv2.imwrite(str(folder / f"{row.stem}.png"), encode_probability(image))


def _provenance(folder: Path, export: Path, sha: str) -> None:
    record = {
        "tool": "test",
        "source": str(export / "images" / "val"),
        "threshold": 0.5,
        "weights_sha256": sha,
    }
    (folder / "provenance.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def members(phantom_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two prediction folders of the export's validation cases: the truth, and a worse model
    (outlines two voxels too wide, one false lesion in the brain)."""
    root = tmp_path_factory.mktemp("members")
    good = shutil.copytree(phantom_export / "masks" / "val", root / "good")
    _provenance(good, phantom_export, "good")
    manifest = read_manifest(phantom_export / "manifest.csv")
    for case, rows in manifest[manifest["split"] == "val"].groupby("case"):
        geometry = CaseGeometry.load(phantom_export / "cases" / f"{case}.json")
        truth = np.logical_or.reduce([v > 0.5 for v in read_views(rows, geometry, good).values()])
        worse = ndimage.binary_dilation(truth, iterations=2).astype(np.float32)
        centre = np.round(ndimage.center_of_mass(read_roi(phantom_export, geometry))).astype(int)
        worse[tuple(slice(c + 6, c + 9) for c in centre)] = 1.0
        _write_volume_pngs(worse, rows, root / "worse")
    _provenance(root / "worse", phantom_export, "worse")
    return {"good": good, "worse": root / "worse"}


def test_the_record_scores_each_plane_and_the_models_own_vote(
    phantom_export: Path, members: dict[str, Path]
) -> None:
    good = validation_record(phantom_export, members["good"], 0.5)
    assert set(good["views"]) == {*PLANES, "triplanar"}
    assert good["views"]["triplanar"]["f1"] == 1.0 and good["views"]["triplanar"]["dice"] == 1.0
    worse = validation_record(phantom_export, members["worse"], 0.5)
    assert worse["cases"] == good["cases"] and len(good["cases"]) == 2
    assert worse["views"]["triplanar"]["dice"] < 0.9
    leader, records = member_leader([members["worse"], members["good"]], [0.5, 0.5], ["worse", "good"])
    assert leader == 1 and records[1] == good
    with pytest.raises(InputError, match="other weights"):
        member_leader([members["worse"]], [0.5], ["good"])


def test_reassemble_lets_the_better_model_lead(
    phantom_export: Path, members: dict[str, Path], tmp_path: Path
) -> None:
    def fuse(preds: list[Path], vote: str = "lead") -> dict[str, np.ndarray]:
        out = tmp_path / f"{vote}_{'_'.join(p.name for p in preds)}"
        reassemble(ReassembleOptions(slices=phantom_export, preds=preds, out=out, split="val", vote=vote))
        return {p.name: np.asarray(nib.load(p).dataobj) for p in out.glob("*.nii.gz")}

    alone = fuse([members["good"]], "triplanar")
    led = fuse([members["worse"], members["good"]])
    today = fuse([members["worse"], members["good"]], "triplanar")
    assert alone.keys() == led.keys() and len(alone) == 2
    for case, mask in alone.items():
        np.testing.assert_array_equal(led[case], mask)
    assert sum(int(m.sum()) for m in today.values()) > sum(int(m.sum()) for m in alone.values())
    record = json.loads((tmp_path / "lead_worse_good" / "provenance.json").read_text())
    assert record["vote"] == "lead" and record["leader"] == 1
    assert record["validation"][1]["views"]["triplanar"]["f1"] == 1.0


def test_reassemble_without_records_votes_alike(
    phantom_export: Path, members: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = shutil.copytree(
        members["good"], tmp_path / "bare", ignore=shutil.ignore_patterns("provenance.json")
    )
    out = tmp_path / "seg"
    preds = [str(members["worse"]), str(bare)]
    reassemble_main(["--slices", str(phantom_export), "--preds", *preds, "--out", str(out), "--split", "val"])
    assert json.loads((out / "provenance.json").read_text())["vote"] == "triplanar"
    assert "(triplanar vote over 2 folder(s)" in capsys.readouterr().out.splitlines()[-1]
