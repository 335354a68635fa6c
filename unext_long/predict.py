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
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from slicer.errors import InputError
from slicer.io import atomic_path
from unext_long.data import image_to_tensor, list_images, pad_stack, read_image
from unext_long.model import UNeXt, create_model
from unext_long.train import select_device

__all__ = ["PredictResult", "load_model", "predict_images", "probability_png", "predict_folder"]


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

    Slices of different sizes share a batch: they are padded to a common size and cropped back.
    """
    device = device or next(model.parameters()).device
    model.eval()
    stream = iter(images)
    while chunk := list(islice(stream, batch)):
        tensors = [image_to_tensor(image) for image in chunk]
        inputs = pad_stack(tensors, mode="replicate").to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            probs = torch.sigmoid(model(inputs)[:, 0].float()).cpu().numpy()
        for prob, tensor in zip(probs, tensors, strict=True):
            yield prob[: tensor.shape[1], : tensor.shape[2]]


def probability_png(prob: np.ndarray) -> np.ndarray:
    """float probability in [0, 1] -> uint8 ``round(probability * 255)``."""
    return np.round(np.clip(prob, 0.0, 1.0) * 255).astype(np.uint8)


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
    stream = (read_image(p, config["in_channels"]) for p in todo)
    bar = tqdm(zip(todo, predict_images(model, stream, batch), strict=True), total=len(todo), desc="predict")
    for path, prob in bar:
        with atomic_path(out / f"{path.stem}.png") as tmp:
            if not cv2.imwrite(str(tmp), probability_png(prob)):
                raise InputError(tmp, "could not be written")
    result = PredictResult(out, len(todo), len(images) - len(todo))
    print(f"wrote {result.written} probability PNGs to {out} ({result.skipped} already there)")
    return result
