"""Any trained model of the toolkit behind one interface, for in-memory prediction.

A UNeXt checkpoint (``unext-long train``: state dict + JSON config) and a YOLO checkpoint
(``yolo segment train`` on a ``yolo-long init`` model) both say which channel recipe they
were trained on; :func:`load_predictor` reads it so the caller slices accordingly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from slicer.dataset_yaml import recipe_from_groups
from slicer.errors import InputError

__all__ = ["Predictor", "load_predictor"]

PredictFn = Callable[..., Iterator[np.ndarray]]


@dataclass(frozen=True)
class Predictor:
    """A loaded model: ``predict(images, batch=...)`` yields one (H, W) probability per (C, H, W) image.

    ``threshold`` is the model's own operating point: the probability above which it calls a pixel.
    """

    name: str
    recipe: tuple[str, ...]
    context: int
    predict: PredictFn
    threshold: float


def _resolve_device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _unext(weights: Path, device: str) -> Predictor:
    from unext_long.predict import DECISION_THRESHOLD, load_model, predict_images

    model, config = load_model(weights, device)
    recipe, context = recipe_from_groups(config["channel_groups"])

    def predict(images: Iterable[np.ndarray], batch: int = 16) -> Iterator[np.ndarray]:
        return predict_images(model, images, batch=batch)

    name = f"unext:{weights.parent.parent.name or weights.stem}"
    return Predictor(name, recipe, context, predict, DECISION_THRESHOLD)


def _yolo(weights: Path, device: str) -> Predictor:
    from yolo_long.predict import DECISION_THRESHOLD, load_model, predict_images

    model = load_model(weights, device)
    block = getattr(model.model, "yaml", {}).get("mslong")
    if not block:
        raise InputError(
            weights, "YOLO checkpoint without the mslong channel recipe (build it with yolo-long init)"
        )
    recipe, context = recipe_from_groups(block["channel_groups"])
    predict = partial(predict_images, model, device=device)
    name = f"yolo:{weights.parent.parent.name or weights.stem}"
    return Predictor(name, recipe, context, predict, DECISION_THRESHOLD)


def load_predictor(weights: str | Path, device: str | None = None) -> Predictor:
    """Load a UNeXt or YOLO checkpoint, whichever ``weights`` is."""
    weights, device = Path(weights), _resolve_device(device)
    if not weights.is_file():
        raise InputError(weights, "weights file not found")
    try:
        return _unext(weights, device)
    except InputError:
        return _yolo(weights, device)
