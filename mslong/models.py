"""Any trained model of the toolkit behind one interface, for in-memory prediction.

A UNeXt checkpoint (``unext-long train``: state dict + JSON config) and a YOLO checkpoint
(``yolo segment train`` on a ``yolo-long init`` model) both say which channel recipe and
which export settings they were trained on; :func:`load_predictor` reads them so that the
caller slices accordingly, and :func:`ensemble_settings` refuses models that disagree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.devices import select_device
from runtime.errors import InputError
from slicer.dataset_yaml import recipe_from_groups

if TYPE_CHECKING:
    from slicer.prepare import PreparedCase

__all__ = [
    "SLICING_KEYS",
    "SHIPPED_MODEL",
    "Predictor",
    "load_predictor",
    "ensemble_settings",
    "resolve_weights",
]

# Export settings that change what a model sees, beyond its own channel recipe: every model
# of an ensemble must share them, since one slicing of the pair serves them all.
SLICING_KEYS = ("spacing", "match_histograms", "brain_mask")

PredictFn = Callable[..., Iterator[np.ndarray]]

# The model that ships inside the package (docs/model.md: data, recipe, figures); ``--weights
# shipped`` names it, ``--weights none`` the subtraction baseline.
SHIPPED_MODEL = Path(__file__).with_name("weights") / "unext_ljubljana_transplants.pt"
BASELINE_WORD, SHIPPED_WORD = "none", "shipped"


@dataclass(frozen=True)
class Predictor:
    """A loaded model: ``predict(images, batch=...)`` yields one (H, W) probability per (C, H, W) image.

    ``threshold`` is the model's own operating point: the probability above which it calls a pixel.
    ``export`` holds the export settings it was trained on (empty for older checkpoints). A 3D
    model (nnU-Net) has ``predict_volume`` instead: the prepared pair in, one probability
    volume on its export grid out.
    """

    name: str
    recipe: tuple[str, ...]
    context: int
    predict: PredictFn | None
    threshold: float
    weights: Path = Path()
    export: dict[str, Any] = field(default_factory=dict)
    predict_volume: Callable[[PreparedCase], np.ndarray] | None = None


def _run_name(weights: Path) -> str:
    """A model's name: its training run's folder (``runs/NAME/weights/best.pt``), else its file's stem.

    >>> _run_name(Path("runs/unext/weights/best.pt")), _run_name(Path("mslong/weights/unext_x.pt"))
    ('unext', 'unext_x')
    """
    in_run = weights.parent.name == "weights" and weights.stem in ("best", "last")
    return weights.parent.parent.name if in_run else weights.stem


def _unext(weights: Path, device: str) -> Predictor:
    from unext_long.predict import DECISION_THRESHOLD, load_model, predict_images

    model, config = load_model(weights, device)
    recipe, context = recipe_from_groups(config["channel_groups"])

    def predict(images: Iterable[np.ndarray], batch: int = 16) -> Iterator[np.ndarray]:
        return predict_images(model, images, batch=batch)

    name = f"unext:{_run_name(weights)}"
    return Predictor(name, recipe, context, predict, DECISION_THRESHOLD, weights, config.get("export") or {})


def _yolo(weights: Path, device: str) -> Predictor:
    from yolo_long.predict import DECISION_THRESHOLD, load_model, model_block, predict_images

    model = load_model(weights, device)
    block = model_block(model)
    if not block:
        raise InputError(
            weights, "YOLO checkpoint without the mslong channel recipe (build it with yolo-long init)"
        )
    recipe, context = recipe_from_groups(block["channel_groups"])
    predict = partial(predict_images, model, device=device)
    name = f"yolo:{_run_name(weights)}"
    return Predictor(name, recipe, context, predict, DECISION_THRESHOLD, weights, block.get("export") or {})


def _nnunet(folder: Path, device: str) -> Predictor:
    from fusion.volumes import NNUNET_THRESHOLD, load_nnunet_model

    model = load_nnunet_model(folder, device)

    def predict_volume(prepared: PreparedCase) -> np.ndarray:
        return model.predict(prepared.geometry, prepared.volumes)

    return Predictor(
        f"nnunet:{folder.name}", (), 0, None, NNUNET_THRESHOLD, folder, predict_volume=predict_volume
    )


def load_predictor(weights: str | Path, device: str | None = None) -> Predictor:
    """Load a UNeXt or YOLO checkpoint, or a trained nnU-Net model folder, whichever ``weights`` is."""
    weights, device = Path(weights), str(select_device(device))
    if weights.is_dir():
        return _nnunet(weights, device)
    if not weights.is_file():
        raise InputError(weights, "weights file not found")
    try:
        return _unext(weights, device)
    except InputError:
        return _yolo(weights, device)


def resolve_weights(given: Sequence[str | Path]) -> list[Path]:
    """``--weights`` as files: the word ``shipped`` is :data:`SHIPPED_MODEL`, ``none`` alone
    the subtraction baseline (no file). A file named so is given with a folder (``./shipped``).

    >>> resolve_weights(["none"]), resolve_weights(["shipped", "run/best.pt"])[1].as_posix()
    ([], 'run/best.pt')
    """
    words = [str(value) for value in given]
    if BASELINE_WORD in words:
        if len(words) > 1:
            raise InputError("--weights", f"'{BASELINE_WORD}' is the subtraction baseline: give it alone")
        return []
    return [SHIPPED_MODEL if word == SHIPPED_WORD else Path(word) for word in words]


def _brain_mask_kind(mode: str) -> str:
    # "dataset", "compute" and "auto" all restrict the model's view to the brain.
    return "none" if mode == "none" else "auto"


def ensemble_settings(predictors: Sequence[Predictor]) -> dict[str, Any]:
    """The :data:`SLICING_KEYS` the models were trained with (those they record).

    Raises:
        InputError: two models recorded different values of one setting.
    """
    settings: dict[str, Any] = {}
    owner: dict[str, Predictor] = {}
    for predictor in predictors:
        for key in SLICING_KEYS:
            if key not in predictor.export:
                continue
            value = predictor.export[key]
            value = _brain_mask_kind(value) if key == "brain_mask" else value
            if key in settings and json.dumps(settings[key]) != json.dumps(value):
                raise InputError(
                    predictor.weights,
                    f"was trained with {key} {value!r}, {owner[key].weights} with {settings[key]!r}: "
                    "an ensemble slices one way for all its models",
                )
            settings[key], owner[key] = value, predictor
    return settings
