"""What made a folder of outputs: a small ``provenance.json`` beside the files.

Prediction folders (``unext-long predict``, ``yolo-long predict``) and reassembled folders
(``reassemble``) record the weights (name and SHA-256), thresholds, vote and export settings
that made them. A re-run with the same record skips the files already there; a re-run with
another record refuses, unless ``--overwrite``, so that one folder never mixes two models.

>>> record = {"tool": "unext-long predict", "weights": "runs/a/best.pt", "weights_sha256": "ab12"}
>>> same_record(record, {**record, "weights": "moved/best.pt"})
True
>>> same_record(record, {**record, "weights_sha256": "cd34"})
False
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runtime.errors import InputError
from runtime.files import atomic_path

__all__ = [
    "PROVENANCE_FILE",
    "file_sha256",
    "read_provenance",
    "same_record",
    "claim_folder",
    "prediction_record",
    "operating_point",
]

PROVENANCE_FILE = "provenance.json"
# Where the weights lie may change between re-runs; their hash says whether they are the same.
_VOLATILE = ("weights",)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks (checkpoints are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_provenance(folder: str | Path) -> dict[str, Any] | None:
    """The record of ``folder``, or None when it has none."""
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(path, f"is not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise InputError(path, "is not a JSON object")
    return record


def same_record(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two records describe the same outputs (the weights' path aside: their hash counts)."""

    def core(record: Mapping[str, Any]) -> str:
        kept = {k: v for k, v in record.items() if k not in _VOLATILE}
        return json.dumps(kept, sort_keys=True, default=str)

    return core(a) == core(b)


@contextmanager
def claim_folder(
    folder: str | Path, record: Mapping[str, Any], outputs: str, overwrite: bool
) -> Iterator[bool]:
    """Make ``folder`` hold ``record``'s outputs; yields True when finished files may be kept.

    Args:
        outputs: glob of the files the record covers (e.g. ``*.png``), to tell an empty
            folder from one that holds outputs of unknown origin.
        overwrite: replace the record (and, for the caller, every output).

    Raises:
        InputError: the folder holds outputs of another record, or outputs without one.

    A failure inside the block before any output was written leaves the folder as it was.
    """
    folder = Path(folder)
    existing = read_provenance(folder)
    if not overwrite:
        _check_record(folder, existing, record, outputs)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / PROVENANCE_FILE) as tmp:
        tmp.write_text(json.dumps(dict(record), indent=2, default=str) + "\n")
    try:
        yield not overwrite
    except BaseException:
        if not any(folder.glob(outputs)):
            _restore(folder, existing, created)
        raise


def _check_record(folder: Path, existing: dict | None, record: Mapping[str, Any], outputs: str) -> None:
    if existing is not None and not same_record(existing, record):
        keys = {*existing, *record} - set(_VOLATILE)
        changed = sorted(k for k in keys if existing.get(k) != record.get(k))
        raise InputError(
            folder / PROVENANCE_FILE,
            f"was made with other {', '.join(changed)}; use --overwrite or another output folder",
        )
    if existing is None and any(folder.glob(outputs)):
        raise InputError(
            folder, f"holds {outputs} of unknown origin; use --overwrite or another output folder"
        )


def _restore(folder: Path, existing: dict | None, created: bool) -> None:
    """Undo the record of a claim whose block wrote nothing."""
    path = folder / PROVENANCE_FILE
    if existing is not None:
        path.write_text(json.dumps(existing, indent=2, default=str) + "\n")
        return
    path.unlink(missing_ok=True)
    if created and not any(folder.iterdir()):
        folder.rmdir()


def prediction_record(
    tool: str, weights: str | Path, source: str | Path, threshold: float, **settings: Any
) -> dict[str, Any]:
    """What makes a folder of probability PNGs: model, weights, slices, operating point."""
    return {
        "tool": tool,
        "weights": str(weights),
        "weights_sha256": file_sha256(weights),
        "source": str(Path(source).resolve()),
        "threshold": threshold,
        **settings,
    }


def operating_point(folder: str | Path, default: float) -> float:
    """The probability threshold the model behind a prediction folder calls a lesion at."""
    record = read_provenance(folder) or {}
    return float(record.get("threshold", default))
