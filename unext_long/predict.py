"""Prediction: one probability PNG per slice, the format ``fusion.reassemble`` reads.

``PRED_DIR/<stem>.png`` is uint8 ``round(probability * 255)`` with the same stem and the same
H, W as the exported image. The in-memory API (:func:`load_model`, :func:`predict_images`) serves
the one-patient command, which never writes slices to disk.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from slicer.errors import InputError
from slicer.predictions import same_size_batches, write_probability_png
from slicer.writer import read_slice_image
from unext_long.data import image_to_tensor, list_images
from unext_long.model import UNeXt, create_model
from unext_long.train import select_device

__all__ = ["DECISION_THRESHOLD", "PredictResult", "load_model", "predict_images", "predict_folder"]

# UNeXt's output is a sigmoid trained with Dice + BCE: 0.5 is its own decision boundary.
DECISION_THRESHOLD = 0.5


@dataclass
class PredictResult:
    """What :func:`predict_folder` did."""

    out: Path
    written: int
    skipped: int


def load_model(weights: str | Path, device: str | torch.device = "auto") -> tuple[UNeXt, dict]:
    """Load a checkpoint written by ``unext-long train`` (``weights_only=True``), in eval mode.

    Returns:
        the model on ``device`` and its config (model, in_channels, stem, channel_groups, recipe...).
    """
    weights = Path(weights)
    if not weights.is_file():
        raise InputError(weights, "weights file not found")
    device = select_device(device) if isinstance(device, str) else device
    try:
        checkpoint = torch.load(weights, map_location=device, weights_only=True)
        config = json.loads(checkpoint["config"])
        model = create_model(
            config["model"],
            in_channels=config["in_channels"],
            num_classes=config.get("num_classes", 1),
            stem=config["stem"],
            channel_groups=config.get("channel_groups"),
        )
        model.load_state_dict(checkpoint["state_dict"])
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, ValueError, EOFError) as error:
        raise InputError(weights, f"is not a unext-long checkpoint ({error})") from None
    return model.to(device).eval(), config


@torch.no_grad()
def predict_images(
    model: UNeXt, images: Iterable[np.ndarray], batch: int = 8, device: torch.device | None = None
) -> Iterator[np.ndarray]:
    """Lesion probability ``(H, W)`` float32 for each uint8 ``(C, H, W)`` image, in order.

    Consecutive slices of one size share a batch (:func:`slicer.predictions.same_size_batches`),
    so a slice's prediction does not depend on its neighbours; the model pads each batch to a
    multiple of 32 and crops back.
    """
    device = device or next(model.parameters()).device
    model.eval()
    for chunk in same_size_batches(images, batch):
        inputs = torch.stack([image_to_tensor(image) for image in chunk]).to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            probs = torch.sigmoid(model(inputs)[:, 0].float()).cpu().numpy()
        yield from probs


def predict_folder(
    weights: str | Path,
    source: str | Path,
    out: str | Path,
    batch: int = 8,
    device: str = "auto",
    overwrite: bool = False,
) -> PredictResult:
    """Write ``out/<stem>.png`` for every ``source/<stem>.tif``; existing PNGs are kept unless ``overwrite``."""
    model, config = load_model(weights, device)
    out = Path(out)
    images = list_images(source)
    todo = [p for p in images if overwrite or not (out / f"{p.stem}.png").is_file()]
    out.mkdir(parents=True, exist_ok=True)
    stream = (read_slice_image(p, config["in_channels"]) for p in todo)
    bar = tqdm(zip(todo, predict_images(model, stream, batch), strict=True), total=len(todo), desc="predict")
    for path, prob in bar:
        write_probability_png(out / f"{path.stem}.png", prob)
    result = PredictResult(out, len(todo), len(images) - len(todo))
    print(f"wrote {result.written} probability PNGs to {out} ({result.skipped} already there)")
    return result
