"""Build an untrained yolo_long model for a dataset and save it as an ultralytics checkpoint.

The model YAMLs in ``yolo_long/cfg`` hold two placeholders (``ChannelGroups``, ``Stem``)
that only the dataset can fill: its channel count and ``mslong.channel_groups``. Building
once in Python at the right channel count and saving the module is what lets the plain
``yolo segment train model=MODEL.pt data=DATA.yaml`` command train it (ultralytics rebuilds
the model from the YAML stored in the checkpoint, with the data's channels).

Beside the checkpoint goes its training configuration, ``MODEL.train.yaml``: ultralytics'
own ``cfg=`` file (model, data, imgsz and :data:`RECOMMENDED_TRAIN_ARGS`), so that
``yolo segment train cfg=MODEL.train.yaml`` trains with the settings our slices need. A
checkpoint cannot carry them: ultralytics keeps only ``imgsz``, ``data``, ``task`` and
``single_cls`` of a checkpoint's ``train_args``, and reads no hyperparameter from a dataset YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from runtime.errors import InputError
from runtime.files import atomic_path
from slicer.dataset_yaml import read_export_yaml
from slicer.manifest import read_manifest

__all__ = [
    "MODELS",
    "STEMS",
    "RECOMMENDED_TRAIN_ARGS",
    "DataInfo",
    "read_data",
    "default_imgsz",
    "model_config",
    "build_model",
    "init_checkpoint",
    "train_config_path",
]

MODELS = ("yolov9t-seg-long", "yolov9c-seg-long", "yolov9e-seg-long")
STEMS = ("grouped", "siamese")
STRIDE = 32  # YOLOv9's largest stride: ultralytics rounds imgsz up to a multiple of it
# Millimetres per network pixel that YOLO is trained at by default (mslong demo: 1.5 mm
# slices of about 130 pixels at imgsz 224).
INPUT_MM = 0.9
CONFIG_DIR = Path(__file__).parent / "cfg"  # package data (pyproject: yolo_long/cfg/*.yaml)
Stem = Literal["grouped", "siamese"]

# Training arguments that suit MRI slices (written into MODEL.train.yaml by init_checkpoint):
# HSV means nothing for 9 grey-level channels (ultralytics skips it anyway), left-right
# flips are anatomically plausible, up-down flips are not, and the affine stays small
# because slices are already in a canonical orientation at a fixed spacing. Mosaic tiles
# four slices at half size, which halves lesions that are a few pixels wide; a one-epoch
# warm-up leaves short runs (ultralytics' default is 3 epochs) most of their schedule.
RECOMMENDED_TRAIN_ARGS: dict[str, float] = {
    "hsv_h": 0.0,
    "hsv_s": 0.0,
    "hsv_v": 0.0,
    "fliplr": 0.5,
    "flipud": 0.0,
    "degrees": 10.0,
    "translate": 0.1,
    "scale": 0.2,
    "mosaic": 0.0,
    "warmup_epochs": 1.0,
}


@dataclass(frozen=True)
class DataInfo:
    """The parts of a dataset YAML a model depends on."""

    channels: int
    channel_groups: dict[str, list[int]]
    names: dict[int, str] = field(default_factory=lambda: {0: "new_lesion"})
    # How the slices were made (slicer.dataset_yaml.EXPORT_KEYS): prediction slices alike.
    export: dict[str, Any] = field(default_factory=dict)
    # The longest side of the exported slices, when the export's manifest is there.
    largest_slice: int | None = None


def read_data(path: str | Path) -> DataInfo:
    """The model-relevant part of a slicer export's dataset YAML (:func:`slicer.dataset_yaml.read_export_yaml`).

    Raises:
        InputError: what ``read_export_yaml`` raises, or no ``mslong.channel_groups`` naming t0 and t1
            with as many channels each.
    """
    info = read_export_yaml(path)
    groups = info.channel_groups
    if not {"t0", "t1"} <= groups.keys():
        raise InputError(path, "mslong.channel_groups must name the t0 and t1 channels")
    if len(groups["t0"]) != len(groups["t1"]):
        raise InputError(path, f"t0 and t1 have different channel counts ({groups['t0']} vs {groups['t1']})")
    return DataInfo(
        channels=info.channels,
        channel_groups=groups,
        names=info.names,
        export=info.export,
        largest_slice=_largest_slice(info.root / "manifest.csv"),
    )


def _largest_slice(manifest: Path) -> int | None:
    if not manifest.is_file():
        return None
    rows = read_manifest(manifest)
    return int(rows[["height", "width"]].to_numpy().max()) if len(rows) else None


def default_imgsz(data: DataInfo, fallback: int = 256) -> int:
    """The training size that shows a whole exported slice at :data:`INPUT_MM` mm per pixel.

    YOLO letterboxes each slice into ``imgsz``. New lesions are a few millimetres wide and
    YOLO's finest head sees every 8th pixel, so a slice exported coarser than ``INPUT_MM`` is
    upsampled; finer slices are not shrunk. Rounded up to a multiple of the stride (32).

    >>> default_imgsz(DataInfo(channels=9, channel_groups={}, largest_slice=140, export={"spacing": 1.5}))
    256
    >>> default_imgsz(DataInfo(channels=9, channel_groups={}, largest_slice=140, export={"spacing": 0.5}))
    160
    """
    if not data.largest_slice:
        return fallback
    scale = max(float(data.export.get("spacing", INPUT_MM)) / INPUT_MM, 1.0)
    return STRIDE * math.ceil(data.largest_slice * scale / STRIDE)


def _channel_order(data: DataInfo) -> tuple[list[int], list[list[int]]]:
    """Input order [t0, t1, other groups, ungrouped channels] and the groups in that order."""
    groups = data.channel_groups
    ordered = [list(groups["t0"]), list(groups["t1"])]
    ordered += [list(v) for k, v in groups.items() if k not in ("t0", "t1")]
    grouped = {c for g in ordered for c in g}
    loose = [c for c in range(data.channels) if c not in grouped]
    if loose:
        ordered.append(loose)
    return [c for g in ordered for c in g], ordered


def _stem_row(row: list[Any], stem: Stem, groups: list[list[int]], source: str) -> list[Any]:
    f, n, _, (channels, kernel, stride) = row
    if stem == "siamese":
        time = len(groups[0])
        other = sum(len(g) for g in groups[2:])
        return [f, n, "SiameseStem", [channels, kernel, stride, time, other]]
    sizes = {len(g) for g in groups}
    if len(sizes) != 1:
        raise InputError(
            source, f"the grouped stem needs equal channel groups, got sizes {[len(g) for g in groups]}"
        )
    # ultralytics rounds a Conv's channels to a multiple of 8; groups must divide them too
    step = math.lcm(8, len(groups))
    channels = step * math.ceil(channels / step)
    return [f, n, "Conv", [channels, kernel, stride, None, len(groups)]]


def model_config(model: str, stem: Stem, data: DataInfo, source: str = "--data") -> dict[str, Any]:
    """The ultralytics model dict of ``model`` with its placeholders filled for ``data``.

    >>> info = DataInfo(channels=9, channel_groups={"t1": [0, 1, 2], "t0": [3, 4, 5], "diff": [6, 7, 8]})
    >>> model_config("yolov9t-seg-long", "grouped", info)["backbone"][:2]
    [[-1, 1, 'ChannelGroups', [[3, 4, 5, 0, 1, 2, 6, 7, 8]]], [-1, 1, 'Conv', [24, 3, 2, None, 3]]]
    """
    if model not in MODELS:
        raise InputError("--model", f"unknown model {model!r} (choose from {', '.join(MODELS)})")
    if stem not in STEMS:
        raise InputError("--stem", f"unknown stem {stem!r} (choose from {', '.join(STEMS)})")
    config = yaml.safe_load((CONFIG_DIR / f"{model}.yaml").read_text())
    order, groups = _channel_order(data)
    for section in ("backbone", "head"):
        for i, row in enumerate(config[section]):
            if row[2] == "ChannelGroups":
                config[section][i] = [row[0], row[1], "ChannelGroups", [order]]
            elif row[2] == "Stem":
                config[section][i] = _stem_row(row, stem, groups, source)
    config["yaml_file"] = f"{model}.yaml"  # ultralytics names the architecture from it
    config["mslong"] = {
        "model": model,
        "stem": stem,
        "channel_groups": dict(data.channel_groups),
        "export": dict(data.export),
    }
    return config


def build_model(model: str, stem: Stem, data: DataInfo, seed: int = 0, verbose: bool = False):
    """An untrained ``ultralytics.nn.tasks.SegmentationModel`` for ``data`` (deterministic given ``seed``).

    >>> info = DataInfo(channels=9, channel_groups={"t1": [0, 1, 2], "t0": [3, 4, 5], "diff": [6, 7, 8]})
    >>> net = build_model("yolov9t-seg-long", "siamese", info)
    >>> type(net.model[0]).__name__, type(net.model[1]).__name__, net.names
    ('ChannelGroups', 'SiameseStem', {0: 'new_lesion'})
    """
    import torch
    from ultralytics.nn.tasks import SegmentationModel

    import yolo_long.modules  # noqa: F401  (registers our layers and switches ultralytics offline)

    config = model_config(model, stem, data)
    torch.manual_seed(seed)
    net = SegmentationModel(config, ch=data.channels, nc=len(data.names), verbose=verbose)
    net.names = dict(data.names)
    return net


def init_checkpoint(
    model: str,
    stem: Stem,
    data: str | Path,
    out: str | Path,
    imgsz: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write an untrained checkpoint and its ``cfg=`` file, for ``yolo segment train cfg=OUT.train.yaml``.

    The checkpoint holds what ultralytics' ``load_checkpoint`` reads: the module under
    ``model``, and ``train_args`` (task, data, imgsz) that become the training defaults of
    ``yolo segment train model=OUT data=DATA``. The configuration (:func:`train_config_path`)
    adds :data:`RECOMMENDED_TRAIN_ARGS`; arguments on the command line still override it.

    Args:
        model: one of :data:`MODELS`.
        stem: ``grouped`` or ``siamese``.
        data: the slicer export's dataset YAML.
        out: the ``.pt`` file to write (and ``OUT.train.yaml`` beside it).
        imgsz: default training/prediction image size stored in the checkpoint.
        seed: seed of the weight initialisation.
        overwrite: replace an existing ``out``.
    """
    import torch
    from ultralytics import __version__

    out, data = Path(out), Path(data).resolve()
    if out.suffix != ".pt":
        raise InputError(out, "checkpoint name must end in .pt (ultralytics requires it)")
    config = train_config_path(out)
    if (out.exists() or config.exists()) and not overwrite:
        print(f"{out} or {config.name} exists, kept (use --overwrite to rebuild)")
        return out
    info = read_data(data)
    imgsz = imgsz or default_imgsz(info)
    net = build_model(model, stem, info, seed=seed)
    train_args = {"task": "segment", "data": str(data), "imgsz": imgsz, "model": str(out)}
    checkpoint = {
        "date": datetime.now().astimezone().isoformat(),
        "version": __version__,
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "model": net,
        "ema": None,
        "train_args": train_args,
    }
    with atomic_path(out) as tmp:
        torch.save(checkpoint, tmp)
    # The cfg= file may be used from any folder: the model by its absolute path (data is already).
    _write_train_config(config, {**train_args, "model": str(out.resolve())})
    params = sum(p.numel() for p in net.parameters())
    print(
        f"wrote {out}: {model} ({stem} stem), {params / 1e6:.2f} M parameters, "
        f"{net.yaml['channels']} channels, imgsz {imgsz}; train it with: yolo segment train cfg={config}"
    )
    return out


def train_config_path(checkpoint: str | Path) -> Path:
    """The ``cfg=`` file :func:`init_checkpoint` writes beside ``checkpoint``.

    >>> train_config_path("runs/yolov9t-seg-long.pt").as_posix()
    'runs/yolov9t-seg-long.train.yaml'
    """
    return Path(checkpoint).with_suffix(".train.yaml")


def _write_train_config(path: Path, train_args: dict[str, Any]) -> None:
    header = (
        "# ultralytics training configuration written by yolo-long init:\n"
        f"#   yolo segment train cfg={path.name} [epochs=... batch=... device=...]\n"
        "# Arguments on the command line override these.\n"
    )
    settings = {"mode": "train", **train_args, **RECOMMENDED_TRAIN_ARGS}
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(settings, sort_keys=False))
