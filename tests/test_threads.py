"""Work run side by side gives what it gives one call at a time: same files, same voxels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from runtime.threads import in_parallel, map_in_parallel, thread_budget
from slicer.export import ExportOptions, export_dataset
from slicer.normalise import fill_holes


def test_budget_follows_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert thread_budget() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_budget() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert thread_budget() >= 1


@pytest.mark.parametrize("threads", ["1", "2"])
def test_results_keep_their_order_and_errors_surface(monkeypatch: pytest.MonkeyPatch, threads: str) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    assert list(map_in_parallel(lambda n: n * n, range(20))) == [n * n for n in range(20)]
    with pytest.raises(ZeroDivisionError):
        in_parallel(lambda: 1, lambda: 1 / 0)


def test_fill_holes_is_scipys() -> None:
    rng = np.random.default_rng(0)
    for level in (0.45, 0.5, 0.55):
        blobs = ndimage.gaussian_filter(rng.random((30, 40, 25)), 2) > level
        for mask in (blobs, ~blobs):
            assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
    assert not fill_holes(np.zeros((3, 3, 3), bool)).any() and fill_holes(np.ones((3, 3, 3), bool)).all()


def _files(folder: Path) -> dict[Path, bytes]:
    """Every file an export wrote but its YAML, which names the folder."""
    return {
        p.relative_to(folder): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix != ".yaml"
    }


@pytest.mark.parametrize("threads, workers", [("1", 1), ("2", 2)])
def test_export_is_byte_identical_however_it_shares_the_cores(
    phantom_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: str, workers: int
) -> None:
    cases = sorted(p.name for p in phantom_root.iterdir() if p.is_dir())[:2]
    options = {"dataset": "phantom", "root": phantom_root, "spacing": 2.0, "cases": cases}
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    export_dataset(ExportOptions(out=tmp_path / "reference", **options))
    monkeypatch.setenv("OMP_NUM_THREADS", threads)  # one thread, or two workers sharing two
    export_dataset(ExportOptions(out=tmp_path / "other", workers=workers, **options))
    reference = _files(tmp_path / "reference")
    assert len(reference) > 100 and reference == _files(tmp_path / "other")
