"""yolo_long: model configs, stems and untrained checkpoints (built on the real phantom export)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from runtime.errors import InputError
from yolo_long.build import MODELS, STEMS, DataInfo, build_model, init_checkpoint, model_config, read_data

DEFAULT_GROUPS = {"t1": [0, 1, 2], "t0": [3, 4, 5], "diff": [6, 7, 8]}


@pytest.fixture(scope="module")
def data_yaml(phantom_export: Path) -> Path:
    return phantom_export / "phantom_long.yaml"


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_and_stem_builds_and_runs(data_yaml: Path, model: str, stem: str) -> None:
    data = read_data(data_yaml)
    assert data.channels == 9 and data.channel_groups == DEFAULT_GROUPS
    net = build_model(model, stem, data).eval()
    with torch.no_grad():
        _, outputs = net(torch.rand(1, 9, 64, 64))
    assert [tuple(f.shape[-2:]) for f in outputs["feats"]] == [(8, 8), (4, 4), (2, 2)]  # P3..P5
    assert outputs["proto"].shape[-2:] == (16, 16)  # masks come at imgsz / 4
    assert net.yaml["channels"] == 9 and net.yaml["nc"] == 1 and net.names == {0: "new_lesion"}
    stems = [m for m in net.model if type(m).__name__ == "SiameseStem"]
    assert len(stems) == (0 if stem == "grouped" else 2 if model.startswith("yolov9e") else 1)


def test_grouped_stem_is_one_convolution_group_per_channel_group() -> None:
    config = model_config("yolov9t-seg-long", "grouped", DataInfo(9, DEFAULT_GROUPS))
    order = config["backbone"][0][3][0]
    _, _, name, args = config["backbone"][1]
    assert order == [3, 4, 5, 0, 1, 2, 6, 7, 8]  # t0, t1, diff
    assert name == "Conv" and args[-1] == 3 and args[0] % 3 == 0 and args[0] % 8 == 0


def test_siamese_stem_shares_its_time_point_encoder() -> None:
    net = build_model("yolov9t-seg-long", "siamese", DataInfo(6, {"t1": [0, 1, 2], "t0": [3, 4, 5]}))
    stem = net.model[1]
    x = torch.rand(1, 6, 32, 32)
    swapped = x[:, [3, 4, 5, 0, 1, 2]]  # t0 <-> t1: f0 and f1 swap, f1 - f0 changes sign
    assert stem.other is None and stem.encode.conv.in_channels == 3
    ordered = net.model[0](x)
    torch.testing.assert_close(stem.encode(ordered[:, :3]), stem.encode(net.model[0](swapped)[:, 3:]))


def test_bad_dataset_yaml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    content = {"path": str(tmp_path), "train": "images/train", "val": "images/val", "channels": 9}
    bad.write_text(yaml.safe_dump({**content, "mslong": {"channel_groups": {"t1": [0, 1, 2]}}}))
    with pytest.raises(InputError, match="bad.yaml: mslong.channel_groups must name the t0 and t1"):
        read_data(bad)
    uneven = DataInfo(7, {"t1": [0, 1, 2], "t0": [3, 4, 5], "diff": [6]})
    with pytest.raises(InputError, match="equal channel groups"):
        model_config("yolov9t-seg-long", "grouped", uneven)


def test_checkpoint_loads_in_a_fresh_process_without_importing_yolo_long(
    data_yaml: Path, tmp_path: Path
) -> None:
    out = init_checkpoint("yolov9t-seg-long", "siamese", data_yaml, tmp_path / "init.pt", imgsz=64)
    probe = (
        "import sys; from ultralytics import YOLO; import ultralytics.utils as u; m = YOLO(sys.argv[1]);"
        "print(type(m.model.model[1]).__name__, m.model.yaml['channels'], m.overrides['imgsz'],"
        " 'yolo_long.modules' in sys.modules, u.ONLINE, u.SETTINGS['sync'])"
    )
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "config")}
    run = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-6:] == ["SiameseStem", "9", "64", "True", "False", "False"]
    kept = init_checkpoint("yolov9t-seg-long", "grouped", data_yaml, out)  # exists: kept, not rebuilt
    assert (
        kept == out
        and torch.load(out, weights_only=False)["model"].model[1].__class__.__name__ == "SiameseStem"
    )
