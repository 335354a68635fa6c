"""Nothing lost, nothing escapes: the output policy (runtime.files), option checks and incomplete input.

Each case gets one line naming the file, row or option and the problem, exit status 2, no output,
no temporary file, and every input byte-identical afterwards. The commands run in this process
(their ``main``), so that errors cost no interpreter start-up.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_reassemble import write_mask_export

from fusion.cli import evaluate_main, reassemble_main
from mslong.cli import main as mslong_main
from slicer.cli import main as slicer_main
from slicer.datasets import load_dataset


def _digest(paths: Sequence[Path]) -> dict[Path, str]:
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def _refused(
    capsys: pytest.CaptureFixture[str], command: Callable[[list[str]], None], args: Sequence[object]
) -> str:
    """Run ``command`` expecting exit 2 with one error line; return that line.

    Beside it stderr may hold argparse's usage line and progress bars a terminal clears.
    """
    with pytest.raises(SystemExit) as exit_info:
        command([str(a) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:") or ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.fixture
def pair(phantom_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of one phantom pair (tests may try to destroy it)."""
    case = load_dataset("phantom", root=phantom_root)[0]
    t0, t1 = tmp_path / "t0.nii.gz", tmp_path / "t1.nii.gz"
    shutil.copy(case.t0, t0)
    shutil.copy(case.t1, t1)
    return t0, t1


def _no_leftovers(folder: Path) -> None:
    assert not list(folder.rglob(".tmp-*")), list(folder.rglob(".tmp-*"))


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("-o", "{t1}"), "is also an input"),
        (("-o", "{tmp}/seg"), "name it .nii.gz or .nii"),
        (("-o", "{tmp}"), "is a folder"),
        (("-o", "{t0}/seg.nii.gz"), "is not a folder"),
        (("-o", "{tmp}/seg.nii.gz", "--spacing", "-2"), "--spacing: voxel size -2 mm"),
        (("-o", "{tmp}/seg.nii.gz", "--spacing", "0"), "--spacing: voxel size 0 mm"),
        (("-o", "{tmp}/seg.nii.gz", "--baseline-z", "nan"), "--baseline-z: must be a z-score"),
        (("-o", "{tmp}/seg.nii.gz", "--threshold", "0.3"), "--threshold: votes the networks' views"),
        (("-o", "{tmp}/seg.nii.gz", "--min-votes", "9"), "--min-votes must be 1 to 4"),
        (("-o", "{tmp}/seg.nii.gz", "--min-size", "-5"), "--min-size must be a finite volume"),
        (("-o", "{tmp}/seg.nii.gz", "--batch", "0"), "--batch: must be 1 or more"),
    ],
)
def test_segment_refuses_before_any_work(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple, fragment: str
) -> None:
    t0, t1 = pair
    before = _digest([t0, t1])
    args = [a.format(t0=t0, t1=t1, tmp=tmp_path) for a in extra]
    line = _refused(capsys, mslong_main, ["segment", "-t1", t0, "-t2", t1, *args])
    assert "error: " in line and fragment in line
    assert _digest([t0, t1]) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t0.nii.gz", "t1.nii.gz"]


def test_segment_same_scan_twice_and_unreadable_weights(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0, t1 = pair
    out = tmp_path / "seg.nii.gz"
    assert "same file as -t1" in _refused(capsys, mslong_main, ["segment", "-t1", t1, "-t2", t1, "-o", out])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    line = _refused(capsys, mslong_main, ["segment", "-t1", t0, "-t2", t1, "-o", out, "--weights", junk])
    assert "junk.pt" in line and "not a loadable" in line
    assert not out.exists()


def test_existing_output_is_refused_then_replaced_with_overwrite(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0, t1 = pair
    out = tmp_path / "seg.nii.gz"
    out.write_bytes(b"an earlier result")
    args = ["segment", "-t1", t0, "-t2", t1, "-o", out, "--spacing", "4"]
    assert "exist(s); pass --overwrite" in _refused(capsys, mslong_main, args)
    assert out.read_bytes() == b"an earlier result"
    mslong_main([str(a) for a in [*args, "--overwrite"]])
    assert nib.load(out).shape == nib.load(t1).shape


def test_full_disk_is_one_line_and_leaves_nothing(
    pair: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t0, t1 = pair
    out = tmp_path / "seg.nii.gz"

    def full(image: object, filename: str) -> None:
        Path(filename).write_bytes(b"half")  # the disk fills up half way
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    monkeypatch.setattr(nib, "save", full)
    line = _refused(capsys, mslong_main, ["segment", "-t1", t0, "-t2", t1, "-o", out, "--spacing", "4"])
    assert "No space left on device" in line
    assert not out.exists()
    _no_leftovers(tmp_path)


def test_voxels_no_mri_has_are_refused_before_allocation(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0, t1 = pair
    img = nib.load(t1)
    huge = tmp_path / "huge.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), np.diag([1000.0, 1000.0, 1000.0, 1.0])), huge)
    line = _refused(capsys, mslong_main, ["segment", "-t1", t0, "-t2", huge, "-o", tmp_path / "seg.nii.gz"])
    assert "huge.nii.gz: voxel size 1000x1000x1000 mm" in line


def _pairs_csv(tmp_path: Path, rows: list[tuple[str, Path, Path]]) -> Path:
    path = tmp_path / "pairs.csv"
    path.write_text("case,t1,t2\n" + "".join(f"{c},{a},{b}\n" for c, a, b in rows))
    return path


def test_list_case_ids_stay_inside_out(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0, t1 = pair
    out = tmp_path / "deep" / "out"
    pairs = _pairs_csv(tmp_path, [("good", t0, t1), ("../../x", t0, t1)])
    line = _refused(capsys, mslong_main, ["segment", "--list", pairs, "--out", out])
    assert "pairs.csv row 3" in line and "'../../x' is not a plain name" in line
    assert not (tmp_path / "x.nii.gz").exists() and not out.exists()


def test_list_output_never_replaces_a_listed_scan(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0, t1 = pair
    follow_up = tmp_path / "p1.nii.gz"
    shutil.copy(t1, follow_up)
    pairs = _pairs_csv(tmp_path, [("p1", t0, follow_up)])
    before = _digest([follow_up])
    line = _refused(capsys, mslong_main, ["segment", "--list", pairs, "--out", tmp_path])
    assert "is also an input" in line and _digest([follow_up]) == before


@pytest.fixture
def axial_only(tmp_path: Path) -> tuple[Path, Path]:
    """An export of one case, and a prediction folder that holds only its axial slices."""
    mask = np.zeros((20, 22, 18), np.uint8)
    mask[5:10, 6:11, 4:9] = 1
    export = tmp_path / "export"
    masks = write_mask_export(export, "c1", mask, np.diag([2.0, 2.0, 2.0, 1.0]), 2.0)
    preds = tmp_path / "preds"
    preds.mkdir()
    for png in masks.glob("c1_axial_*.png"):
        shutil.copy(png, preds)
    return export, preds


def test_reassemble_refuses_an_incomplete_folder(
    axial_only: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export, preds = axial_only
    out = tmp_path / "seg"
    line = _refused(capsys, reassemble_main, ["--slices", export, "--preds", preds, "--out", out])
    assert (
        "38 slices have no prediction (coronal 20 of 20, sagittal 18 of 18" in line
        and "--fill-missing" in line
    )
    assert not out.exists()
    # Asked to, it fills them as background and says how many.
    reassemble_main([str(a) for a in ["--slices", export, "--preds", preds, "--out", out, "--fill-missing"]])
    assert "38 missing slices read as background" in capsys.readouterr().out
    assert (out / "c1.nii.gz").is_file()


def test_reassemble_out_is_never_an_input(axial_only: tuple[Path, Path], capsys: pytest.CaptureFixture[str]):
    export, preds = axial_only
    line = _refused(capsys, reassemble_main, ["--slices", export, "--preds", preds, "--out", preds])
    assert "is also an input" in line


def test_reassemble_vote_count_within_the_planes(
    axial_only: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export, preds = axial_only
    args = ["--slices", export, "--preds", preds, "--out", tmp_path / "seg", "--orientations", "axial"]
    line = _refused(capsys, reassemble_main, [*args, "--min-votes", "2"])
    assert "--min-votes: 2 exceeds the 1 voter(s) here (axial)" in line


def _dataset_copy(phantom_root: Path, tmp_path: Path, cases: int) -> Path:
    root = tmp_path / "data"
    ids = [c.id for c in load_dataset("phantom", root=phantom_root)][:cases]
    for case in ids:
        shutil.copytree(phantom_root / case, root / case)
    lines = (phantom_root / "cases.csv").read_text().splitlines()
    (root / "cases.csv").write_text(
        "\n".join([lines[0], *[line for line in lines[1:] if line.split(",")[0] in ids]]) + "\n"
    )
    return root


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("duplicate", "case id(s) listed more than once"),
        ("bytes", "cases.csv: is not a text CSV"),
    ],
)
def test_dataset_metadata_is_checked(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, fragment: str
) -> None:
    root = _dataset_copy(phantom_root, tmp_path, cases=1)
    metadata = root / "cases.csv"
    if damage == "duplicate":
        lines = metadata.read_text().splitlines()
        metadata.write_text("\n".join([*lines, lines[1]]) + "\n")
    else:
        metadata.write_bytes(bytes(range(128, 256)) * 8)
    out = tmp_path / "export"
    line = _refused(capsys, slicer_main, ["export", "--dataset", "phantom", "--root", root, "--out", out])
    assert fragment in line
    assert not out.exists()


def test_export_of_a_refused_case_leaves_no_folder(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _dataset_copy(phantom_root, tmp_path, cases=1)
    case = next(p for p in root.iterdir() if p.is_dir())
    t1 = case / "flair_time02_on_middle_space.nii.gz"
    img = nib.load(t1)
    data = np.asarray(img.dataobj, np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), t1)
    out = tmp_path / "export"
    args = ["export", "--dataset", "phantom", "--root", root, "--out", out, "--spacing", "4"]
    assert "NaN" in _refused(capsys, slicer_main, args)
    assert not out.exists()


def test_lesion_eval_keeps_an_earlier_evaluation(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores"
    out.mkdir()
    (out / "metrics.csv").write_text("earlier\n")
    args = ["--pred", tmp_path, "--dataset", "phantom", "--root", phantom_root, "--out", out]
    assert "metrics.csv exist(s); pass --overwrite" in _refused(capsys, evaluate_main, args)
    assert (out / "metrics.csv").read_text() == "earlier\n"
