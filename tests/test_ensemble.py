"""The lead rule: members given roles by their validation record (fusion.ensemble, fusion.record)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from fusion.ensemble import Roles, fuse_lead
from fusion.reassemble import ReassembleOptions, reassemble
from fusion.record import member_roles, proven_roles, validation_record
from fusion.views import read_views
from fusion.voting import fuse_views
from runtime.errors import InputError
from runtime.predictions import encode_probability
from slicer.geometry import ORIENTATIONS, CaseGeometry, slice_image
from slicer.manifest import read_manifest
from slicer.writer import read_roi

PLANES = list(ORIENTATIONS)


def _record(f1: float, precision: float, dice: float = 0.5) -> dict:
    return {"cases": ["a"], "views": {"triplanar": {"f1": f1, "precision": precision, "dice": dice}}}


def test_roles_follow_the_records() -> None:
    roles = Roles.from_records([_record(0.4, 0.9), _record(0.7, 0.8), _record(0.5, 0.85)])
    assert roles == Roles(leader=1, trusted=(2, 0))  # both at least as precise, the better first
    assert Roles.from_records([_record(0.6, 0.95), _record(0.2, 0.5)]) == Roles(0, ())
    # F1 and Dice weigh alike: a slightly better F1 does not make up for much worse outlines.
    assert Roles.from_records([_record(0.65, 0.9, dice=0.71), _record(0.67, 0.9, dice=0.55)]).leader == 0
    assert Roles.from_records([_record(0.6, 0.9, dice=0.4), _record(0.6, 0.9, dice=0.7)]).leader == 1
    assert Roles.from_records([_record(0.6, 0.9), None]) is None
    assert Roles.from_records([_record(0.6, 0.9), {"views": {"triplanar": {"f1": None}}}]) is None
    assert Roles.from_records([None]) == Roles(0)


def _cube(shape: tuple[int, int, int], corner: tuple[int, int, int], size: int, value: float) -> np.ndarray:
    volume = np.zeros(shape, np.float32)
    volume[tuple(slice(c, c + size) for c in corner)] = value
    return volume


def test_one_member_leads_alone_exactly() -> None:
    rng = np.random.default_rng(0)
    views = [ndimage.gaussian_filter(rng.random((20, 20, 20)), 2).astype(np.float32) for _ in PLANES]
    level = float(np.quantile(views[0], 0.9))
    expected = fuse_views(views, "triplanar", None, level, 0, 1.0, PLANES)
    got = fuse_lead(views, PLANES, [0, 0, 0], Roles(0), threshold=level, min_size_mm3=0)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_an_untrusted_member_has_no_say_a_trusted_one_confirms_and_proposes() -> None:
    shape = (24, 24, 24)
    lesion = _cube(shape, (4, 4, 4), 3, 0.9)
    seen_once = _cube(shape, (14, 4, 4), 3, 0.9)  # the leader sees it on one plane only
    leader = [lesion + seen_once, lesion, lesion]
    other_lesion = _cube(shape, (4, 14, 14), 3, 0.9)  # the leader misses it
    wide = np.maximum(ndimage.binary_dilation(lesion > 0, iterations=2) * 0.8, lesion)
    other = [wide + seen_once + other_lesion] * 3
    views, members = leader + other, [0, 0, 0, 1, 1, 1]

    alone, _ = fuse_lead(views, PLANES * 2, members, Roles(0), min_size_mm3=0)
    np.testing.assert_array_equal(alone, lesion > 0)  # the leader's lesion, with its own outline
    together, _ = fuse_lead(views, PLANES * 2, members, Roles(0, trusted=(1,)), min_size_mm3=0)
    assert together[lesion > 0].all() and together[seen_once > 0].all() and together[other_lesion > 0].all()
    assert together.sum() == (lesion > 0).sum() + (seen_once > 0).sum() + (other_lesion > 0).sum()
    today, _ = fuse_views(views, "triplanar", None, 0.5, 0, 1.0, PLANES * 2)
    assert today.sum() > together.sum()  # the max merge takes the wide outline


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
        labels, n = ndimage.label(truth)
        _write_volume_pngs(
            (truth & (labels != 1)).astype(np.float32) if n > 1 else truth * 0.0, rows, root / "partial"
        )
    _provenance(root / "worse", phantom_export, "worse")
    _provenance(root / "partial", phantom_export, "partial")
    return {"good": good, "worse": root / "worse", "partial": root / "partial"}


def test_the_record_scores_each_plane_and_the_models_own_vote(
    phantom_export: Path, members: dict[str, Path]
) -> None:
    good = validation_record(phantom_export, members["good"], 0.5)
    assert set(good["views"]) == {*PLANES, "triplanar"}
    assert good["views"]["triplanar"]["f1"] == 1.0 and good["views"]["triplanar"]["dice"] == 1.0
    worse = validation_record(phantom_export, members["worse"], 0.5)
    assert worse["cases"] == good["cases"] and len(good["cases"]) == 2
    assert worse["views"]["triplanar"]["dice"] < 0.9
    roles, records = member_roles([members["worse"], members["good"]], [0.5, 0.5], ["worse", "good"])
    assert roles.leader == 1 and records[1] == good


def test_a_member_is_trusted_only_where_its_role_helps_on_validation(
    phantom_export: Path, members: dict[str, Path]
) -> None:
    folders, thresholds = [members["partial"], members["good"], members["worse"]], [0.5] * 3
    # The truth adds the lesions a leader missed; a model with wide outlines and a false lesion does not.
    assert proven_roles(phantom_export, folders, thresholds, Roles(0, (2, 1))) == Roles(0, (1,))
    assert proven_roles(phantom_export, folders, thresholds, Roles(1, (0, 2))) == Roles(1, ())
    with pytest.raises(InputError, match="other weights"):
        member_roles([members["worse"]], [0.5], ["good"])


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
    assert record["vote"] == "lead" and record["roles"]["leader"] == 1
    assert record["validation"][1]["views"]["triplanar"]["f1"] == 1.0


def test_reassemble_without_records_votes_alike(
    phantom_export: Path, members: dict[str, Path], tmp_path: Path
) -> None:
    bare = shutil.copytree(
        members["good"], tmp_path / "bare", ignore=shutil.ignore_patterns("provenance.json")
    )
    out = tmp_path / "seg"
    reassemble(ReassembleOptions(slices=phantom_export, preds=[members["worse"], bare], out=out, split="val"))
    assert json.loads((out / "provenance.json").read_text())["vote"] == "triplanar"
