"""yolo_long under ultralytics' multi-GPU launcher (``yolo segment train ... device=0,1``), on the CPU.

With several devices the ultralytics trainer does not train: it pickles itself (trainer class,
args, model, callbacks) next to a generated script (``ultralytics.utils.dist.generate_ddp_file``)
and runs that script once per GPU under torchrun. Here the parent side is the real one for our
checkpoint, and the generated script runs unchanged in a fresh process whose every socket
connection and DNS lookup raises, with the environment the parent passes on. What a CPU cannot run
is the workers' process-group setup (``_setup_ddp``: NCCL, one GPU per rank), so the script runs
without torchrun's RANK and its one worker trains in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_yolo_train import NO_NETWORK, small_export

from yolo_long.build import init_checkpoint

if TYPE_CHECKING:
    from ultralytics.models.yolo.segment import SegmentationTrainer


def _worker_script(weights: Path, data: Path, root: Path) -> tuple[SegmentationTrainer, Path]:
    """The trainer that ``yolo segment train model=WEIGHTS data=DATA`` makes, and the script its
    DDP launch would run on each GPU (device=cpu here: the arguments only say where to train)."""
    from ultralytics import YOLO
    from ultralytics.models.yolo.segment import SegmentationTrainer
    from ultralytics.utils import dist

    model = YOLO(weights)  # as the `yolo` CLI does: unpickling our checkpoint imports yolo_long
    trainer = SegmentationTrainer(overrides={
        "model": str(weights), "data": str(data), "epochs": 1, "imgsz": 64, "batch": 2, "workers": 0,
        "device": "cpu", "plots": False, "project": str(root / "runs"), "name": "train",
    })  # fmt: skip
    trainer.model = trainer.get_model(weights=model.model, cfg=model.model.yaml)  # as Model.train does
    return trainer, Path(dist.generate_ddp_file(trainer))


@pytest.fixture(scope="module")
def ddp_worker(phantom_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from ultralytics.utils import dist

    root = tmp_path_factory.mktemp("yolo_ddp")
    data = small_export(phantom_export, root / "data")
    weights = init_checkpoint("yolov9t-seg-long", "siamese", data, root / "init.pt", imgsz=64)
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(NO_NETWORK)
    (root / "config").mkdir()
    env = {  # what the trainer's subprocess inherits, plus the network guard
        **os.environ,
        "PYTHONPATH": str(root / "site"),
        "NO_NETWORK_LOG": str(root / "network.log"),
        "HOME": str(root / "home"),
        "OMP_NUM_THREADS": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dist, "USER_CONFIG_DIR", root / "config")  # where the script and its state go
        trainer, script = _worker_script(weights, data, root)
        try:
            # The workers' state: torch.save's zip archive, the pickle in its data.pkl.
            with zipfile.ZipFile(script.with_suffix(".pt")) as archive:
                pickled = b"".join(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
            run = subprocess.run(
                [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300, cwd=root
            )
        finally:
            dist.ddp_cleanup(trainer, str(script))
    return {"run": run, "root": root, "script": script, "save_dir": trainer.save_dir, "pickled": pickled}


def test_workers_state_names_our_layers_by_module(ddp_worker: dict) -> None:
    # By reference, not by value: unpickling it must import yolo_long.modules (offline, our layers).
    assert b"yolo_long.modules" in ddp_worker["pickled"] and b"SiameseStem" in ddp_worker["pickled"]


def test_generated_ddp_script_trains_our_model_offline(ddp_worker: dict) -> None:
    run, root = ddp_worker["run"], ddp_worker["root"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    weights = ddp_worker["save_dir"] / "weights"
    assert (weights / "last.pt").stat().st_size > 1e6 and (weights / "best.pt").is_file()
    # The worker inherited YOLO_OFFLINE, so not even ultralytics' import-time DNS probe ran, and
    # unpickling our model imported yolo_long (offline switches, our layers) before it was rebuilt.
    assert not (root / "network.log").exists(), (root / "network.log").read_text()
    assert "Download" not in run.stdout + run.stderr


def test_trained_worker_checkpoint_is_our_model(ddp_worker: dict) -> None:
    from ultralytics.utils.patches import torch_load

    checkpoint = torch_load(ddp_worker["save_dir"] / "weights" / "last.pt", map_location="cpu")
    net = checkpoint["ema"] or checkpoint["model"]
    assert type(net.model[1]).__name__ == "SiameseStem" and net.yaml["channels"] == 9


def test_ddp_files_are_cleaned_up(ddp_worker: dict) -> None:
    script = ddp_worker["script"]
    assert not script.exists() and not script.with_suffix(".pt").exists()
