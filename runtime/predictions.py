"""The prediction contract between the networks and fusion: one probability PNG per slice.

``PRED_DIR/<stem>.png`` is uint8 ``round(probability * 255)``, with the stem and the size of
the exported slice. Both networks write it with :func:`write_probability_png`, fusion reads
it back with :func:`decode_probability`, and the one-patient command, which never writes
slices, rounds its in-memory probabilities with :func:`quantise_probability` so that it
takes exactly the decisions ``reassemble`` takes on the files.

>>> encode_probability(np.array([0.0, 0.5, 1.0])).tolist()
[0, 128, 255]
>>> [round(float(p), 4) for p in decode_probability(np.array([0, 128, 255], np.uint8))]
[0.0, 0.502, 1.0]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from runtime.cluster import ClusterOptions, run_array
from runtime.errors import InputError
from runtime.files import atomic_path
from runtime.provenance import claim_folder

__all__ = [
    "encode_probability",
    "decode_probability",
    "quantise_probability",
    "write_probability_png",
    "same_size_batches",
    "PredictSummary",
    "predict_into_folder",
    "slice_case",
    "predict_in_tasks",
]

SCALE = 255.0


def encode_probability(prob: np.ndarray) -> np.ndarray:
    """Probability in [0, 1] -> uint8 ``round(probability * 255)``."""
    return np.rint(np.clip(prob, 0.0, 1.0) * SCALE).astype(np.uint8)


def decode_probability(encoded: np.ndarray) -> np.ndarray:
    """uint8 PNG values -> float32 probability."""
    return encoded.astype(np.float32) / np.float32(SCALE)


def quantise_probability(prob: np.ndarray) -> np.ndarray:
    """The probability a PNG round trip would give back."""
    return decode_probability(encode_probability(prob))


def write_probability_png(path: str | Path, prob: np.ndarray) -> Path:
    """Write one prediction PNG atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), encode_probability(prob)):
            raise InputError(path, "could not be written")
    return path


def same_size_batches(images: Iterable[np.ndarray], batch: int) -> Iterator[list[np.ndarray]]:
    """Group consecutive ``(C, H, W)`` images into batches of at most ``batch`` that share H, W.

    Networks pad a batch to a common size; batching only equal sizes keeps every slice's
    prediction independent of its neighbours in the stream (files or memory alike).
    """
    chunk: list[np.ndarray] = []
    for image in images:
        if chunk and (len(chunk) == batch or image.shape[-2:] != chunk[0].shape[-2:]):
            yield chunk
            chunk = []
        chunk.append(image)
    if chunk:
        yield chunk


@dataclass(frozen=True)
class PredictSummary:
    """What a folder prediction did."""

    out: Path
    written: int
    skipped: int

    def __str__(self) -> str:
        return f"wrote {self.written} probability PNGs to {self.out} ({self.skipped} already there, kept)"


def predict_into_folder(
    slices: Sequence[Path],
    out: str | Path,
    record: Mapping[str, Any],
    predict: Callable[[Iterable[np.ndarray]], Iterator[np.ndarray]],
    read: Callable[[Path], np.ndarray],
    overwrite: bool = False,
) -> PredictSummary:
    """Write ``out/<stem>.png`` for every exported slice, as one model (``record``) predicts it.

    ``read`` opens one slice as the model takes it (the export's reader, checking its channels).

    The folder's ``provenance.json`` (:func:`runtime.provenance.claim_folder`) decides: the same
    record keeps the PNGs already there, another one refuses unless ``overwrite``, which
    redoes every slice.
    """
    out = Path(out)
    with claim_folder(out, record, "*.png", overwrite) as keep:
        todo = [path for path in slices if not (keep and (out / f"{path.stem}.png").is_file())]
        images = (read(path) for path in todo)
        for path, prob in tqdm(
            zip(todo, predict(images), strict=True), total=len(todo), desc="predict", unit="slice"
        ):
            write_probability_png(out / f"{path.stem}.png", prob)
    summary = PredictSummary(out, len(todo), len(slices) - len(todo))
    print(summary)
    return summary


def slice_case(path: str | Path) -> str:
    """The case of an exported slice: ``c1_axial_010.tif`` -> ``c1`` (stems are ``<case>_<plane>_<index>``)."""
    return Path(path).stem.rsplit("_", 2)[0]


def predict_in_tasks(
    cluster: ClusterOptions,
    predict_folder: Callable[..., PredictSummary],
    record: Mapping[str, Any],
    slices: int,
    **settings: Any,
) -> PredictSummary:
    """Claim ``settings["out"]`` for ``record`` here, then predict in ``cluster``'s tasks; returns their sum.

    Each task runs ``predict_folder(**settings, shard=(I, N))`` on a share of the ``slices``
    selected slices and accepts the claim (it makes the same record). Claiming once, before
    any task starts, refuses another model's folder at once and keeps a task from taking
    the PNGs another one has just written for outputs of unknown origin.
    """
    out = Path(settings["out"])
    with claim_folder(out, record, "*.png", settings["overwrite"]):
        shares = run_array(cluster, predict_folder, slices, **settings)
    summary = PredictSummary(out, sum(s.written for s in shares), sum(s.skipped for s in shares))
    print(summary)
    return summary
