"""yolo_long: the plain `yolo segment train` CLI trains our checkpoint offline, in a fresh process.

The training runs in a subprocess whose every socket connection and DNS lookup raises
(a ``sitecustomize.py`` on PYTHONPATH), with HOME and the ultralytics config folder in tmp.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from yolo_long.build import init_checkpoint, train_config_path

NO_NETWORK = """
import os, socket

def refuse(*args, **kwargs):
    with open(os.environ["NO_NETWORK_LOG"], "a") as log:
        log.write(repr(args[:2]) + "\\n")
    raise OSError("network access attempted")

socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
"""


def small_export(export: Path, out: Path, per_split: int = 4) -> Path:
    """Copy a few slices (lesion ones first) of an export into ``out``; return its dataset YAML."""
    data = yaml.safe_load((export / "phantom_long.yaml").read_text())
    for split in ("train", "val"):
        labels = sorted(
            (export / "labels" / split).glob("*.txt"), key=lambda p: (p.stat().st_size == 0, p.name)
        )
        for label in labels[:per_split]:
            for folder, suffix in (("images", ".tif"), ("labels", ".txt"), ("masks", ".png")):
                (out / folder / split).mkdir(parents=True, exist_ok=True)
                shutil.copy(export / folder / split / f"{label.stem}{suffix}", out / folder / split)
    data.update(path=str(out), train="images/train", val="images/val")
    data.pop("test", None)
    (out / "small.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return out / "small.yaml"


@pytest.fixture(scope="module")
def offline_run(phantom_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("yolo_train")
    data = small_export(phantom_export, root / "data")
    weights = init_checkpoint("yolov9t-seg-long", "siamese", data, root / "init.pt", imgsz=64)
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(NO_NETWORK)
    user_settings = Path.home() / ".config" / "Ultralytics" / "settings.json"
    before = user_settings.stat().st_mtime_ns if user_settings.exists() else None
    env = {
        **os.environ,
        "PYTHONPATH": str(root / "site"),
        "NO_NETWORK_LOG": str(root / "network.log"),
        "HOME": str(root / "home"),
        "XDG_CONFIG_HOME": str(root / "home" / ".config"),
        "YOLO_CONFIG_DIR": str(root / "config"),
        "OMP_NUM_THREADS": "1",
    }
    # The cfg= file yolo-long init wrote names the model and the data; the command line overrides the rest.
    args = [
        "segment", "train", f"cfg={train_config_path(weights)}", "epochs=1", "imgsz=64", "batch=2", "workers=0",
        "device=cpu", "plots=True", f"project={root / 'runs'}", "name=train",
    ]  # fmt: skip
    yolo = Path(sys.executable).with_name("yolo")
    run = subprocess.run([str(yolo), *args], capture_output=True, text=True, env=env, timeout=300)
    return {"run": run, "root": root, "data": data, "user_settings": user_settings, "before": before}


def test_plain_cli_trains_our_checkpoint_offline(offline_run: dict) -> None:
    run, root = offline_run["run"], offline_run["root"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (root / "runs" / "train" / "weights" / "best.pt").stat().st_size > 1e6
    assert (root / "runs" / "train" / "labels.jpg").exists()  # label plots needed the (local) font
    # Only ultralytics' import-time DNS probe (before our checkpoint is unpickled) tried the network,
    # and it was refused; no download, update check or analytics call was attempted afterwards.
    attempts = (root / "network.log").read_text().splitlines() if (root / "network.log").exists() else []
    assert set(attempts) <= {"('one.one.one.one', 0)", "('dns.google', 0)"}, attempts
    assert "Download" not in run.stdout + run.stderr


def test_init_config_reaches_the_trainer(offline_run: dict) -> None:
    used = yaml.safe_load((offline_run["root"] / "runs" / "train" / "args.yaml").read_text())
    assert used["data"] == str(offline_run["data"].resolve())
    assert used["model"] == str((offline_run["root"] / "init.pt").resolve())
    assert (used["mosaic"], used["degrees"], used["scale"], used["warmup_epochs"]) == (0.0, 10.0, 0.2, 1.0)
    assert (used["imgsz"], used["epochs"]) == (64, 1)  # the command line wins over the file


def test_training_leaves_user_settings_alone(offline_run: dict) -> None:
    user_settings, before = offline_run["user_settings"], offline_run["before"]
    assert (user_settings.stat().st_mtime_ns if user_settings.exists() else None) == before
    # ultralytics made its own settings file in the tmp config dir; our in-memory switches never saved to it
    settings = json.loads((offline_run["root"] / "config" / "Ultralytics" / "settings.json").read_text())
    assert settings["sync"] is True
