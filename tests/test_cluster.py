"""Cluster jobs (runtime.cluster): shares, submitit's local executor, merged outputs equal one process's."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from dataclasses import replace
from pathlib import Path

import cloudpickle
import pytest

from fusion.cli import reassemble_main
from runtime.cluster import (
    ClusterOptions,
    Shard,
    make_executor,
    parse_shard,
    run_array,
    select_items,
    shard_of,
)
from runtime.errors import InputError
from slicer.cli import main as slicer_main
from slicer.export import ExportOptions, export_dataset

# The tasks of a local array job are other processes: they get this module's task functions
# by value, since they cannot import a test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

EXPORT_FLAGS = ["--dataset", "phantom", "--spacing", "2", "--val-fraction", "0.5", "--brain-mask", "none"]
# What the export writes; timings may differ between runs, everything else must not.
TIMING_KEYS = {"seconds"}


def _report(tag: str, shard: Shard) -> tuple[str, Shard, str, int]:
    import SimpleITK

    threads = SimpleITK.ProcessObject.GetGlobalDefaultNumberOfThreads()
    return tag, shard, os.environ["OMP_NUM_THREADS"], threads


def _bad_input_in_second(shard: Shard) -> Shard:
    if shard[0] == 2:
        raise InputError("case002/t1.nii.gz", "is 4D")
    return shard


def _crash(shard: Shard) -> None:
    raise RuntimeError("disk full")


def test_shares_are_contiguous_balanced_and_cover_everything() -> None:
    items = list(range(10))
    for count in (1, 3, 4, 10, 12):
        shares = [shard_of(items, (index, count)) for index in range(1, count + 1)]
        assert [item for share in shares for item in share] == items
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/2", "3/2", "2", "a/b", "1/0", "-1/2"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)
    assert select_items(["a1", "b1", "c1"], ["c", "a"], (2, 2), key=lambda item: item[0]) == ["c1"]
    with pytest.raises(InputError, match="no case z"):
        select_items(["a1"], ["z"], key=lambda item: item[0])


def test_local_array_returns_in_share_order_with_threads_capped(tmp_path: Path) -> None:
    cluster = ClusterOptions(executor="local", shards=3, cpus=1, logs=tmp_path / "logs")
    # Three shards of two items: only two tasks start.
    assert run_array(cluster, _report, 2, tag="x") == [("x", (1, 2), "1", 1), ("x", (2, 2), "1", 1)]
    assert run_array(cluster, _report, 0, tag="x") == []


def test_failed_tasks_raise_one_line(tmp_path: Path) -> None:
    cluster = ClusterOptions(executor="local", shards=2, cpus=1, logs=tmp_path / "logs")
    with pytest.raises(InputError) as bad_input:
        run_array(cluster, _bad_input_in_second, 2)
    assert str(bad_input.value) == "case002/t1.nii.gz: is 4D"  # as the task met it
    with pytest.raises(InputError) as crash:
        run_array(replace(cluster, shards=1), _crash, 1)
    assert crash.value.problem == "task 1 of 1 failed: RuntimeError: disk full"
    assert "Traceback" in Path(crash.value.source).read_text()  # the task's log


def test_slurm_job_asks_for_what_the_flags_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "srun"  # submitit only looks for srun to accept SLURM
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    cluster = ClusterOptions(
        executor="slurm", partition="gpu", minutes=30, gpus=1, cpus=8, mem_gb=32, logs=tmp_path / "logs"
    )
    sbatch = make_executor(cluster)._executor._make_submission_file_text("python -m task", "uid")
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=30",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32GB",
        "export OMP_NUM_THREADS=8",
        "export ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=8",
    ):
        assert line in sbatch.splitlines(), line


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--shard", "3/2"], "error: --shard: '3/2' is not I/N with 1 <= I <= N"),
        (["--executor", "pbs"], "error: --executor: use one of local, slurm"),
        (["--executor", "local", "--shard", "1/2"], "error: --shard: runs one share in this process"),
        (["--cases", "case009"], "error: --cases: no case case009"),
    ],
)
def test_bad_cluster_flags_exit_2_with_one_line(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        slicer_main(["export", *EXPORT_FLAGS, "--root", str(phantom_root), "--out", str(out), *flags])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(message)
    assert not out.exists()


@pytest.mark.skipif(shutil.which("srun") is not None, reason="SLURM is installed here")
def test_slurm_without_slurm_is_one_line(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        slicer_main(
            ["export", *EXPORT_FLAGS, "--root", str(phantom_root), "--out", str(out), "--executor", "slurm"]
        )
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith('error: --executor slurm: Could not detect "srun"')


def test_a_share_writes_its_cases_only(phantom_root: Path, tmp_path: Path) -> None:
    options = ExportOptions(
        dataset="phantom", root=phantom_root, out=tmp_path, spacing=2.0, val_fraction=0.5, brain_mask="none"
    )
    summary = export_dataset(replace(options, cases=("case001", "case003")), shard=(2, 2))
    assert sorted(p.name for p in (tmp_path / "cases").glob("*.json")) == ["case003.json"]
    assert summary.yaml_path is None and not (tmp_path / "manifest.csv").exists()
    assert summary.line().endswith("-> cases/ only")


@pytest.fixture(scope="module")
def exports(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The phantom exported by one process, and by a local array job of two tasks."""
    one, sharded = tmp_path_factory.mktemp("one_process"), tmp_path_factory.mktemp("sharded")
    slicer_main(["export", *EXPORT_FLAGS, "--root", str(phantom_root), "--out", str(one)])
    shards = ["--executor", "local", "--shards", "2"]
    slicer_main(["export", *EXPORT_FLAGS, "--root", str(phantom_root), "--out", str(sharded), *shards])
    return one, sharded


def _without_timings(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _outputs(folder: Path) -> dict[str, object]:
    """Every file a command wrote (submitit's folder aside), comparable across output folders."""
    contents: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if not path.is_file() or name.startswith(".submitit/"):
            continue
        if path.suffix == ".json":
            contents[name] = _without_timings(json.loads(path.read_text()))
        elif path.suffix in (".yaml", ".txt"):  # the YAML holds its own folder: ``path: <out>``
            contents[name] = path.read_text().replace(str(folder.resolve()), "<out>")
        else:
            contents[name] = path.read_bytes()
    return contents


def test_sharded_export_equals_one_process(exports: tuple[Path, Path]) -> None:
    one, sharded = exports
    expected, merged = _outputs(one), _outputs(sharded)
    assert {"manifest.csv", "phantom_long.yaml", "yolo_train.txt", "cases/case003.json"} <= set(merged)
    assert merged.keys() == expected.keys()
    for name, content in expected.items():
        assert merged[name] == content, name
    assert len(list((sharded / ".submitit").glob("*_result.pkl"))) == 2  # two tasks did the work


def test_sharded_reassemble_equals_one_process(exports: tuple[Path, Path], tmp_path: Path) -> None:
    export = exports[0]
    preds = tmp_path / "preds"  # the export's own masks, as a prediction folder
    preds.mkdir()
    for png in export.glob("masks/*/*.png"):
        shutil.copy(png, preds)
    common = ["--slices", str(export), "--preds", str(preds)]
    reassemble_main([*common, "--out", str(tmp_path / "one")])
    reassemble_main([*common, "--out", str(tmp_path / "sharded"), "--executor", "local", "--shards", "2"])
    expected = _outputs(tmp_path / "one")
    assert len([name for name in expected if name.endswith(".nii.gz")]) == 4
    assert _outputs(tmp_path / "sharded") == expected  # masks byte for byte, and one provenance
