"""Predict one probability map per exported slice with a trained yolo_long checkpoint.

The probability of a pixel is the highest ``confidence x mask`` over the predicted
instances (0 where there is none), with masks at the slice's own size
(``retina_masks=True``). A low default confidence threshold keeps weak instances, so the
map carries information for the lesion-wise fusion; ``fusion`` reads the PNGs
(``PRED_DIR/<stem>.png``, uint8 = probability * 255).

An untrained checkpoint shows the interface (a trained one is ``runs/segment/<name>/weights/best.pt``):

>>> import tempfile
>>> from slicer.dataset_yaml import write_export_yaml
>>> from yolo_long.build import init_checkpoint
>>> tmp = tempfile.TemporaryDirectory(); folder = Path(tmp.name)
>>> data = write_export_yaml(folder / "data.yaml", splits={"train", "val"}, recipe=("t1", "t0", "diff"),
...                          context=1, spacing=1.0, orientations=("axial",), label="consensus", dataset="demo")
>>> weights = init_checkpoint("yolov9t-seg-long", "siamese", data, folder / "untrained.pt", imgsz=64)  # doctest: +ELLIPSIS
wrote ...untrained.pt: yolov9t-seg-long (siamese stem), 2.21 M parameters, 9 channels, imgsz 64; train it with: ...
>>> model = load_model(weights)
>>> probs = list(predict_images(model, [np.zeros((9, 60, 44), np.uint8)]))
>>> probs[0].shape, probs[0].dtype
((60, 44), dtype('float32'))
>>> tmp.cleanup()
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from runtime.cluster import ClusterOptions, Shard, select_items, shard_of
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

__all__ = [
    "DEFAULT_CONF",
    "DECISION_THRESHOLD",
    "load_model",
    "predict_images",
    "probability_map",
    "model_block",
    "predict_folder",
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
        first = (str(error).strip().splitlines() or [""])[0]  # ultralytics' messages run over lines
        raise InputError(
            weights, f"not a loadable ultralytics checkpoint ({type(error).__name__}: {first})"
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


def model_block(model: Any) -> dict[str, Any]:
    """The ``mslong`` block ``yolo-long init`` stored in the model's YAML (channel groups, export)."""
    return dict(getattr(model.model, "yaml", {}).get("mslong") or {})


def predict_folder(
    weights: str | Path,
    source: str | Path,
    out: str | Path,
    imgsz: int | None = None,
    conf: float = DEFAULT_CONF,
    batch: int = 8,
    device: str | None = None,
    overwrite: bool = False,
    cases: Sequence[str] = (),
    shard: Shard | None = None,
    cluster: ClusterOptions | None = None,
) -> PredictSummary:
    """Write ``out/<stem>.png`` for every slice of ``source`` (a folder or a ``.txt`` listing;
    uint8 = probability * 255).

    The folder records the weights and settings in ``provenance.json``: a re-run with them
    skips the PNGs already there; others refuse unless ``overwrite``. ``cases`` keeps the
    slices of these cases, ``shard`` (I, N) the I-th of N shares of them; with ``cluster``'s
    executor, its tasks predict the shares (:func:`runtime.predictions.predict_in_tasks`).
    """
    source = Path(source)
    slices = select_items(list_images(source), cases, key=slice_case)
    if cluster is not None and cluster.submits:
        record = _record(weights, source, imgsz, conf, load_model(weights, "cpu"))
        settings = dict(weights=weights, source=source, out=out, imgsz=imgsz, conf=conf, batch=batch)
        settings.update(device=device, overwrite=overwrite, cases=tuple(cases))
        return predict_in_tasks(cluster, predict_folder, record, len(slices), **settings)
    model = load_model(weights, device)
    return predict_into_folder(
        shard_of(slices, shard),
        out,
        _record(weights, source, imgsz, conf, model),
        lambda images: predict_images(model, images, imgsz, conf, batch, device),
        partial(read_slice_image, channels=model.model.yaml["channels"]),
        overwrite,
    )


def _record(weights: str | Path, source: Path, imgsz: int | None, conf: float, model: Any) -> dict[str, Any]:
    """What makes the folder's PNGs (the provenance every task of a cluster run makes alike)."""
    return prediction_record(
        "yolo-long predict",
        weights,
        source,
        DECISION_THRESHOLD,
        model="yolo",
        conf=conf,
        imgsz=imgsz,
        export=model_block(model).get("export", {}),
    )
