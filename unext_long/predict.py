"""Prediction: one probability PNG per slice, the format ``fusion.reassemble`` reads.

``PRED_DIR/<stem>.png`` is uint8 ``round(probability * 255)`` with the same stem and the same
H, W as the exported image. The in-memory API (:func:`load_model`, :func:`predict_images`) serves
the one-patient command, which never writes slices to disk.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from runtime.cluster import ClusterOptions, Shard, select_items, shard_of
from runtime.devices import select_device
from runtime.errors import InputError
from runtime.predictions import (
    PredictSummary,
    predict_in_tasks,
    predict_into_folder,
    same_size_batches,
    slice_case,
)
from runtime.provenance import prediction_record
from slicer.dataset_yaml import list_images
from slicer.writer import read_slice_image
from unext_long.data import image_to_tensor
from unext_long.model import UNeXt, create_model

__all__ = ["DECISION_THRESHOLD", "load_model", "predict_images", "predict_folder"]

# UNeXt's output is a sigmoid trained with Dice + BCE: 0.5 is its own decision boundary.
DECISION_THRESHOLD = 0.5


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

    Consecutive slices of one size share a batch (:func:`runtime.predictions.same_size_batches`),
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
    cases: Sequence[str] = (),
    shard: Shard | None = None,
    cluster: ClusterOptions | None = None,
) -> PredictSummary:
    """Write ``out/<stem>.png`` for every slice of ``source`` (a folder or a ``.txt`` listing).

    The folder records the weights in ``provenance.json``: a re-run with them skips the PNGs
    already there; other weights refuse unless ``overwrite`` (:func:`runtime.predictions.predict_into_folder`).
    ``cases`` keeps the slices of these cases, ``shard`` (I, N) the I-th of N shares of them;
    with ``cluster``'s executor, its tasks predict the shares (:func:`runtime.predictions.predict_in_tasks`).
    """
    slices = select_items(list_images(source), cases, key=slice_case)
    if cluster is not None and cluster.submits:
        record = _record(weights, source, load_model(weights, "cpu")[1])
        settings = dict(weights=weights, source=source, out=out, batch=batch, device=device)
        settings.update(overwrite=overwrite, cases=tuple(cases))
        return predict_in_tasks(cluster, predict_folder, record, len(slices), **settings)
    model, config = load_model(weights, device)
    return predict_into_folder(
        shard_of(slices, shard),
        out,
        _record(weights, source, config),
        lambda images: predict_images(model, images, batch),
        partial(read_slice_image, channels=config["in_channels"]),
        overwrite,
    )


def _record(weights: str | Path, source: str | Path, config: dict) -> dict:
    """What makes the folder's PNGs (the provenance every task of a cluster run makes alike)."""
    return prediction_record(
        "unext-long predict",
        weights,
        source,
        DECISION_THRESHOLD,
        model="unext",
        export=config.get("export", {}),
    )
