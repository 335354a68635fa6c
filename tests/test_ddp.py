"""UNeXt with DDP on the CPU (gloo): the sharded lesion sampler, torchrun and ``--gpus`` runs, resume.

Two CPU ranks stand in for two GPUs: the code path is the same but for the backend (gloo, not
NCCL) and BatchNorm (SyncBatchNorm has no CPU implementation).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from slicer.dataset_yaml import read_export_yaml
from unext_long.data import LesionSampler
from unext_long.predict import load_model
from unext_long.train import TrainOptions, train

TINY = {"imgsz": 64, "batch": 4, "size": "unext-s", "max_slices": 12, "workers": 0, "device": "cpu"}
TINY_ARGS = [f"--{key.replace('_', '-')}={value}" for key, value in TINY.items()]


def test_ranks_share_one_draw_disjointly_and_deterministically() -> None:
    flags = np.arange(40) % 8 == 0  # 5 lesion slices in 40
    single = LesionSampler(flags, 0.5, seed=3)
    shares = [LesionSampler(flags, 0.5, seed=3, num_replicas=2, rank=rank) for rank in (0, 1)]
    for sampler in (single, *shares):
        sampler.set_epoch(7)
    draw, share0, share1 = list(single), list(shares[0]), list(shares[1])
    assert len(share0) == len(share1) == 20
    # The ranks take alternate positions of the very draw one process makes: together, the same epoch.
    assert share0 == draw[0::2] and share1 == draw[1::2]
    assert list(shares[0]) == share0  # a function of seed and epoch only
    shares[0].set_epoch(8)
    assert list(shares[0]) != share0
    fractions = []
    for epoch in range(50):  # a rank's share holds lesions as often as the whole draw (0.5)
        shares[1].set_epoch(epoch)
        fractions.append(flags[list(shares[1])].mean())
    assert 0.4 < np.mean(fractions) < 0.6


def test_odd_draws_are_padded_so_ranks_step_together() -> None:
    shares = [LesionSampler(np.zeros(7, bool), 0.5, num_replicas=3, rank=rank) for rank in range(3)]
    assert [len(list(share)) for share in shares] == [3, 3, 3]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def _files(run_dir: Path) -> set[str]:
    return {path.relative_to(run_dir).as_posix() for path in run_dir.rglob("*")}


def _epochs(run_dir: Path) -> list[str]:
    with (run_dir / "results.csv").open() as handle:
        return [row["epoch"] for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def runs(phantom_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One epoch in one process, one under ``torchrun --nproc_per_node 2``, then that resumed by
    ``unext-long train --gpus 2``."""
    project = tmp_path_factory.mktemp("ddp_runs")
    data = phantom_export / "phantom_long.yaml"
    train(TrainOptions(data, epochs=1, project=project, name="single", **TINY))
    common = ["train", f"--data={data}", f"--project={project}", "--name=ddp", *TINY_ARGS]
    torchrun = Path(sys.executable).with_name("torchrun")
    first = _run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "unext_long", *common, "--epochs=1"]
    )
    files_after_one = _files(project / "ddp")
    unext_long = Path(sys.executable).with_name("unext-long")
    resumed = _run([str(unext_long), *common, "--gpus=2", "--epochs=2", "--resume"])
    return {"project": project, "data": data, "first": first, "resumed": resumed, "files": files_after_one}


def test_a_ddp_run_folder_looks_like_a_single_process_one(runs: dict) -> None:
    project = runs["project"]
    assert runs["files"] == _files(project / "single")
    assert {"results.csv", "weights/best.pt", "weights/last.pt"} <= runs["files"]
    # Rank 0 alone reports: one summary line, not one per rank.
    assert runs["first"].stdout.count("trained unext-s") == 1


def test_gpus_flag_resumes_a_torchrun_run(runs: dict) -> None:
    run_dir = runs["project"] / "ddp"
    assert _epochs(run_dir) == ["0", "1"]
    last = torch.load(run_dir / "weights" / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and last["optimizer"]["state"]
    config = json.loads(last["config"])
    assert config["export"] == read_export_yaml(runs["data"]).export and config["export"]


def test_ddp_checkpoints_are_single_process_checkpoints(runs: dict) -> None:
    run_dir = runs["project"] / "ddp"
    state = torch.load(run_dir / "weights" / "best.pt", weights_only=True)["state_dict"]
    assert not any(key.startswith("module.") for key in state)  # saved from the bare model
    model, _ = load_model(run_dir / "weights" / "best.pt", "cpu")  # a plain UNeXt, strict load
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    # ... and a single process resumes a DDP run.
    result = train(
        TrainOptions(runs["data"], epochs=3, project=runs["project"], name="ddp", resume=True, **TINY)
    )
    assert result.epochs == 3 and _epochs(run_dir) == ["0", "1", "2"]
