"""The dataset YAML of an export: ultralytics' keys plus our ``mslong:`` block.

Written once by ``slicer export`` (:func:`write_export_yaml`) and read by every consumer
(:func:`read_export_yaml`): the UNeXt trainer, ``yolo-long init`` and the one-patient
command, which all need the channel count and which channels hold t0, t1 and their
difference.

>>> recipe_from_groups({"t1": [0, 1, 2], "t0": [3, 4, 5], "diff": [6, 7, 8]})
(('t1', 't0', 'diff'), 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from runtime.errors import InputError
from runtime.files import atomic_path
from slicer.datasets import SPLITS

__all__ = [
    "EXPORT_KEYS",
    "ExportInfo",
    "write_export_yaml",
    "write_train_listing",
    "write_listing",
    "list_images",
    "read_export_yaml",
    "channel_names",
    "channel_groups",
    "recipe_from_groups",
]

# The export settings a model depends on: prediction must slice the same way.
EXPORT_KEYS = ("spacing", "orientations", "recipe", "context", "register", "brain_mask", "match_histograms")
CLASS_NAMES = {0: "new_lesion"}
# ultralytics' training listing: every lesion slice this often, beside this share of the
# lesion-free ones. YOLO learns lesions only from slices that show one, and a short run sees
# each slice a few times; UNeXt reads every slice (mslong.train) and balances by sampling.
LISTING_LESION_REPEATS = 2
LISTING_EMPTY_SHARE = 0.5
TRAIN_LISTING = "yolo_train.txt"


def channel_names(recipe: Sequence[str], context: int) -> list[str]:
    """``["t1-1", "t1+0", "t1+1", ...]``: source and slice offset of every channel."""
    return [f"{source}{offset:+d}" for source in recipe for offset in range(-context, context + 1)]


def channel_groups(recipe: Sequence[str], context: int) -> dict[str, list[int]]:
    """Channel indices per source, e.g. ``{"t1": [0, 1, 2], "t0": [3, 4, 5], ...}``."""
    width = 2 * context + 1
    return {source: list(range(i * width, (i + 1) * width)) for i, source in enumerate(recipe)}


def recipe_from_groups(groups: Mapping[str, Sequence[int]]) -> tuple[tuple[str, ...], int]:
    """The inverse of :func:`channel_groups`: ``(recipe, context)``."""
    ordered = sorted(groups.items(), key=lambda item: min(item[1]))
    widths = {len(indices) for _, indices in ordered}
    if len(widths) != 1 or (width := widths.pop()) % 2 == 0:
        raise ValueError(f"channel groups {dict(groups)} are not a recipe x (2 context + 1) layout")
    return tuple(name for name, _ in ordered), (width - 1) // 2


@dataclass(frozen=True)
class ExportInfo:
    """What a dataset YAML says: where the slices are and how their channels are laid out."""

    yaml_path: Path
    root: Path
    channels: int
    splits: dict[str, Path]
    channel_groups: dict[str, list[int]] = field(default_factory=dict)
    recipe: list[str] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=lambda: dict(CLASS_NAMES))
    spacing: float | None = None
    # How the slices were made (spacing, orientations, recipe, context, registration, brain
    # mask, histogram matching, label): models record it so that prediction slices alike.
    export: dict[str, Any] = field(default_factory=dict)


def write_train_listing(export: Path, manifest: pd.DataFrame, seed: int) -> str | None:
    """Write ultralytics' lesion-balanced training listing in ``export``; its name, or None.

    >>> rows = pd.DataFrame({"split": ["train"] * 3, "instances": [1, 0, 0], "stem": ["a", "b", "c"]})
    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> write_train_listing(folder, rows, seed=0)
    'yolo_train.txt'
    >>> (folder / "yolo_train.txt").read_text().split()
    ['./images/train/a.tif', './images/train/a.tif', './images/train/c.tif']
    """
    train = manifest[manifest["split"] == "train"]
    if train.empty:
        return None
    lesion = sorted(train.loc[train["instances"] > 0, "stem"])
    empty = sorted(train.loc[train["instances"] == 0, "stem"])
    keep = round(len(empty) * LISTING_EMPTY_SHARE)
    drawn = sorted(np.random.default_rng(seed).choice(empty, keep, replace=False)) if keep else []
    return write_listing(export, TRAIN_LISTING, "train", lesion * LISTING_LESION_REPEATS + list(drawn))


def list_images(source: str | Path) -> list[Path]:
    """The ``.tif`` slices of an images folder, or those a ``.txt`` listing names, sorted by name.

    A listing holds one path per line, relative to the listing's folder unless absolute (the
    ultralytics convention, so one dataset YAML serves both trainers).
    """
    source = Path(source)
    if source.suffix == ".txt" and source.is_file():
        lines = [line.strip() for line in source.read_text().splitlines() if line.strip()]
        images = [path if path.is_absolute() else source.parent / path for path in map(Path, lines)]
        missing = [path for path in images if not path.is_file()]
        if missing:
            raise InputError(source, f"lists {len(missing)} missing slice(s), e.g. {missing[0]}")
    elif source.is_dir():
        images = list(source.glob("*.tif"))
    else:
        raise InputError(source, "images folder not found")
    if not images:
        raise InputError(source, "holds no .tif slices")
    return sorted(images, key=lambda path: path.name)


def write_listing(export: Path, name: str, split: str, stems: Sequence[str]) -> str:
    """Write an ultralytics listing (one ``./images/<split>/<stem>.tif`` per line) in ``export``."""
    with atomic_path(export / name) as tmp:
        tmp.write_text("".join(f"./images/{split}/{stem}.tif\n" for stem in stems))
    return name


def write_export_yaml(
    path: Path,
    *,
    splits: set[str],
    recipe: Sequence[str],
    context: int,
    spacing: float,
    orientations: Sequence[str],
    label: str,
    dataset: str,
    export: Mapping[str, Any] | None = None,
    train_listing: str | None = None,
) -> Path:
    """Write ``path`` (the export folder is its parent) atomically.

    ``export``: the settings that made the slices (:data:`EXPORT_KEYS` of the export's options).
    ``train_listing``: what ultralytics trains on (:func:`write_train_listing`); the UNeXt
    trainer reads ``mslong.train``, every training slice.
    """
    content: dict[str, Any] = {"path": str(path.parent.resolve())}
    content.update({split: f"images/{split}" for split in SPLITS if split in splits or split != "test"})
    folders = {"train": content["train"]}
    if train_listing:
        content["train"] = train_listing
    content["names"] = dict(CLASS_NAMES)
    content["channels"] = len(recipe) * (2 * context + 1)
    content["mslong"] = {
        "recipe": list(recipe),
        "context": context,
        "channel_names": channel_names(recipe, context),
        "channel_groups": channel_groups(recipe, context),
        "spacing": spacing,
        "orientations": list(orientations),
        "label": label,
        "dataset": dataset,
        "export": dict(export or {}),
        **folders,
    }
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(content, sort_keys=False, default_flow_style=None))
    return path


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(path, "dataset YAML not found")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InputError(path, f"is not valid YAML ({error})") from None
    if not isinstance(content, dict):
        raise InputError(path, "is not a YAML mapping")
    missing = [key for key in ("path", "train", "val", "channels") if key not in content]
    if missing:
        raise InputError(path, f"lacks {', '.join(missing)} (is this a slicer export YAML?)")
    if not isinstance(content["channels"], int) or content["channels"] < 1:
        raise InputError(path, f"'channels' must be a positive integer, not {content['channels']!r}")
    return content


def read_export_yaml(path: str | Path) -> ExportInfo:
    """Read and check a dataset YAML written by ``slicer export``.

    Raises:
        InputError: missing or broken file, missing ``path``/``train``/``val``/``channels``, or
            channel groups that overlap or exceed the channel count.
    """
    path = Path(path)
    content = _load(path)
    root = Path(content["path"])
    root = root if root.is_absolute() else (path.parent / root).resolve()
    block = content.get("mslong") or {}
    groups = {str(k): [int(c) for c in v] for k, v in (block.get("channel_groups") or {}).items()}
    listed = [c for g in groups.values() for c in g]
    if len(set(listed)) != len(listed) or not set(listed) <= set(range(content["channels"])):
        raise InputError(
            path, f"mslong.channel_groups {groups} overlap or exceed channels: {content['channels']}"
        )
    names = content.get("names") or dict(CLASS_NAMES)
    names = dict(enumerate(names)) if isinstance(names, list) else {int(k): str(v) for k, v in names.items()}
    return ExportInfo(
        yaml_path=path,
        root=root,
        channels=content["channels"],
        splits={name: root / (block.get(name) or content[name]) for name in SPLITS if content.get(name)},
        channel_groups=groups,
        recipe=[str(r) for r in block.get("recipe") or []],
        names=names,
        spacing=float(block["spacing"]) if block.get("spacing") is not None else None,
        export=dict(block.get("export") or {}),
    )
