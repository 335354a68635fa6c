"""Reading datasets: the registry, the happy path, and every kind of bad input.

Each bad input is checked twice: through the library (``InputError`` naming the file)
and through ``slicer cases`` in a subprocess (exit status 2, one line on stderr naming
the file, no traceback). The session phantom is copied before anything is broken.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from runtime.errors import InputError
from simulation.phantom import T0_NAME, T1_NAME
from slicer.datasets import load_dataset

SLICER = Path(sys.executable).with_name("slicer")
REGISTRY = Path(__file__).resolve().parents[1] / "datasets.yaml"


def _missing_rater(root: Path) -> tuple[Path, Path | None, str]:
    target = root / "case001" / "ground_truth_expert2.nii.gz"
    target.unlink()
    return root, None, str(target)


def _garbage_file(root: Path) -> tuple[Path, Path | None, str]:
    target = root / "case002" / T1_NAME
    target.write_bytes(b"\x1f\x8b this is not a NIfTI image" * 10)
    return root, None, str(target)


def _no_root(root: Path) -> tuple[Path, Path | None, str]:
    missing = root.parent / "does-not-exist"
    return missing, None, str(missing)


def _pattern_matches_nothing(root: Path) -> tuple[Path, Path | None, str]:
    registry = root.parent / "registry.yaml"
    text = REGISTRY.read_text().replace(
        't1: "{case}/flair_time02_on_middle_space.nii.gz"', 't1: "{case}/flair_t2_typo.nii.gz"'
    )
    assert "flair_t2_typo" in text
    registry.write_text(text)
    return root, registry, str(root)


def _grids_disagree(root: Path) -> tuple[Path, Path | None, str]:
    target = root / "case000" / T0_NAME
    img = nib.load(target)
    cropped = np.asarray(img.dataobj)[:-3]
    nib.save(nib.Nifti1Image(cropped, img.affine, img.header), target)
    return root, None, str(target)


def _four_d(root: Path) -> tuple[Path, Path | None, str]:
    target = root / "case003" / T1_NAME
    img = nib.load(target)
    data = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(np.stack([data, data], axis=-1), img.affine), target)
    return root, None, str(target)


def _broken_registry(root: Path) -> tuple[Path, Path | None, str]:
    registry = root.parent / "broken.yaml"
    registry.write_text("datasets:\n  phantom: {t1: [unclosed\n")
    return root, registry, str(registry)


BREAKERS: dict[str, Callable[[Path], tuple[Path, Path | None, str]]] = {
    "missing file": _missing_rater,
    "unreadable file": _garbage_file,
    "root does not exist": _no_root,
    "pattern matches nothing": _pattern_matches_nothing,
    "t0 and t1 grids disagree": _grids_disagree,
    "4D image": _four_d,
    "broken datasets.yaml": _broken_registry,
}


@pytest.fixture(params=sorted(BREAKERS))
def broken(
    request: pytest.FixtureRequest, phantom_root: Path, tmp_path: Path
) -> tuple[Path, Path | None, str]:
    """(root, registry or None, the path the error must name) of a freshly broken copy."""
    root = tmp_path / "phantom"
    shutil.copytree(phantom_root, root)
    return BREAKERS[request.param](root)


def _run_cases(root: Path, registry: Path | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(SLICER), "cases", "--dataset", "phantom", "--root", str(root)]
    if registry is not None:
        command += ["--registry", str(registry)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSLONG_")}
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_library_raises_input_error_naming_the_file(broken: tuple[Path, Path | None, str]) -> None:
    root, registry, culprit = broken
    with pytest.raises(InputError) as caught:
        load_dataset("phantom", root=root, registry=registry)
    assert caught.value.source == culprit
    assert caught.value.problem


def test_cli_exits_2_with_one_line(broken: tuple[Path, Path | None, str], tmp_path: Path) -> None:
    root, registry, culprit = broken
    result = _run_cases(root, registry, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {culprit}: "), result.stderr
    print(lines[0])  # shown with -s: the messages users read
    assert "Traceback" not in result.stderr


def test_cli_lists_the_cases(phantom_root: Path, tmp_path: Path) -> None:
    result = _run_cases(phantom_root, None, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(phantom_root / "cases.csv")
    for case, count in zip(table["case"], table["new_lesions"], strict=True):
        row = next(line for line in result.stdout.splitlines() if line.startswith(case))
        assert str(count) in row.split()
    summary = result.stdout.strip().splitlines()[-1]
    assert summary == (
        f"slicer cases: {len(table)} cases, {table['new_lesions'].sum()} new lesions in dataset 'phantom'"
    )


def test_registry_entry_names_its_phantom_root(
    tmp_path: Path, phantom_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without --root the environment variable of the registry entry picks the folder.
    monkeypatch.setenv("MSLONG_PHANTOM_ROOT", str(phantom_root))
    assert [c.id for c in load_dataset("phantom", registry=REGISTRY)][:2] == ["case000", "case001"]
