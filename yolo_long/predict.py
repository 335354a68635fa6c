"""Predict one probability map per exported slice with a trained yolo_long checkpoint.

The probability of a pixel is the highest ``confidence x mask`` over the predicted
instances (0 where there is none), with masks at the slice's own size
(``retina_masks=True``). A low default confidence threshold keeps weak instances, so the
map carries information for the lesion-wise fusion; ``fusion`` reads the PNGs
(``PRED_DIR/<stem>.png``, uint8 = probability * 255).

>>> model = load_model("runs/segment/train/weights/best.pt")  # doctest: +SKIP
>>> probs = list(predict_images(model, [np.zeros((9, 60, 44), np.uint8)]))  # doctest: +SKIP
>>> probs[0].shape, probs[0].dtype  # doctest: +SKIP
((60, 44), dtype('float32'))
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slicer.errors import InputError
from slicer.predictions import same_size_batches, write_probability_png
from slicer.writer import read_slice_image

__all__ = [
    "DEFAULT_CONF",
    "DECISION_THRESHOLD",
    "load_model",
    "predict_images",
    "probability_map",
    "predict_folder",
    "PredictSummary",
]

DEFAULT_CONF = 0.05
# Where YOLO itself calls a lesion: ultralytics' default prediction confidence. Fusion
# thresholds YOLO's maps here (``reassemble --threshold``), not at UNeXt's 0.5.
DECISION_THRESHOLD = 0.25


def load_model(weights: str | Path, device: str | None = None) -> Any:
    """Load a trained checkpoint as an ``ultralytics.YOLO`` segmentation model (offline)."""
    import yolo_long.modules  # noqa: F401  (registers our layers, switches ultralytics offline)

    weights = Path(weights)
    if not weights.is_file():
        raise InputError(weights, "weights file not found")
    from ultralytics import YOLO

    try:
        model = YOLO(str(weights), task="segment")
    except Exception as error:  # ultralytics raises TypeError/RuntimeError/... for unreadable files
        raise InputError(
            weights, f"not a loadable ultralytics checkpoint ({type(error).__name__}: {error})"
        ) from None
    if device:
        model.to(device)
    return model


def probability_map(result: Any) -> np.ndarray:
    """Per-pixel max of ``confidence x mask`` over the instances of one ultralytics result, float32 (H, W)."""
    height, width = result.orig_shape
    if result.masks is None or len(result.boxes) == 0:
        return np.zeros((height, width), np.float32)
    masks = result.masks.data.float()  # (N, H, W) 0/1 at the original size (retina_masks=True)
    conf = result.boxes.conf.float().view(-1, 1, 1)
    return (masks * conf).amax(0).cpu().numpy().astype(np.float32)


def predict_images(
    model: Any,
    images: Iterable[np.ndarray],
    imgsz: int | None = None,
    conf: float = DEFAULT_CONF,
    batch: int = 8,
    device: str | None = None,
) -> Iterator[np.ndarray]:
    """Yield one float32 (H, W) probability map per image (C, H, W) uint8, in order.

    Args:
        model: from :func:`load_model`.
        images: slices as exported (one page per channel), any H, W.
        imgsz: network input size; ``None`` uses the size the checkpoint was trained at.
        conf: confidence threshold of the instances kept.
        batch: images per forward pass.
        device: e.g. ``cpu`` or ``0``; ``None`` lets ultralytics choose.
    """
    options = {"conf": conf, "retina_masks": True, "verbose": False, "batch": batch}
    if imgsz:
        options["imgsz"] = imgsz
    if device:
        options["device"] = device
    for chunk in same_size_batches(images, batch):
        arrays = [np.ascontiguousarray(np.moveaxis(image, 0, -1)) for image in chunk]  # ultralytics wants HWC
        for result in model.predict(arrays, **options):
            yield probability_map(result)


@dataclass(frozen=True)
class PredictSummary:
    written: int
    skipped: int
    out: Path

    def __str__(self) -> str:
        return f"wrote {self.written} probability PNGs to {self.out} ({self.skipped} already there, kept)"


def predict_folder(
    weights: str | Path,
    source: str | Path,
    out: str | Path,
    imgsz: int | None = None,
    conf: float = DEFAULT_CONF,
    batch: int = 8,
    device: str | None = None,
    overwrite: bool = False,
) -> PredictSummary:
    """Write ``out/<stem>.png`` for every ``source/<stem>.tif`` (uint8 = probability * 255).

    Slices whose PNG exists are skipped unless ``overwrite``.
    """
    from tqdm import tqdm

    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise InputError(source, "image folder not found")
    slices = sorted(source.glob("*.tif"))
    if not slices:
        raise InputError(source, "no .tif slices in this folder")
    todo = [p for p in slices if overwrite or not (out / f"{p.stem}.png").exists()]
    model = load_model(weights, device) if todo else None
    channels = model.model.yaml["channels"] if model else 0
    images = (read_slice_image(path, channels) for path in todo)
    probs = predict_images(model, images, imgsz, conf, batch, device) if todo else iter(())
    out.mkdir(parents=True, exist_ok=True)
    for path, prob in tqdm(zip(todo, probs, strict=True), total=len(todo), desc="predict", unit="slice"):
        write_probability_png(out / f"{path.stem}.png", prob)
    summary = PredictSummary(written=len(todo), skipped=len(slices) - len(todo), out=out)
    print(summary)
    return summary
