"""Writing one prepared case as 2D files: TIFF images, YOLO labels, mask PNGs, manifest rows.

TIFFs are written with tifffile, zlib level 1: about half the size of raw pages for a
few milliseconds per slice, and readable both by tifffile and by OpenCV
(``cv2.imreadmulti``, what ultralytics uses). LZW and PackBits would need the optional
imagecodecs package to write or to read back with tifffile.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import tifffile

from slicer.geometry import AXIS_OF, slice_image
from slicer.labels import yolo_lines
from slicer.prepare import PreparedCase, slice_channels

__all__ = ["MANIFEST_COLUMNS", "stem_of", "case_paths", "write_case_slices", "remove_files"]

MANIFEST_COLUMNS = (
    "stem",
    "case",
    "split",
    "orientation",
    "index",
    "height",
    "width",
    "crop",
    "lesion_pixels",
    "instances",
)
TIFF_OPTIONS = {"compression": "zlib", "compressionargs": {"level": 1}, "photometric": "minisblack"}


def stem_of(case: str, orientation: str, index: int) -> str:
    return f"{case}_{orientation}_{index:03d}"


def case_paths(out: Path, split: str, stem: str) -> tuple[Path, Path, Path]:
    """Image, label and mask path of one slice."""
    return (
        out / "images" / split / f"{stem}.tif",
        out / "labels" / split / f"{stem}.txt",
        out / "masks" / split / f"{stem}.png",
    )


def remove_files(paths: Sequence[Path]) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


def _kept_slices(
    prepared: PreparedCase, orientation: str, drop_empty: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Slice indices to write and their lesion pixel counts (lesion-free ones thinned by ``drop_empty``)."""
    axis = AXIS_OF[orientation]
    n = prepared.geometry.shape[axis]
    if prepared.mask is None:
        pixels = np.zeros(n, dtype=np.int64)
    else:
        pixels = prepared.mask.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64)
    keep = np.ones(n, dtype=bool)
    empty = np.flatnonzero(pixels == 0)
    if drop_empty > 0 and len(empty):
        keep[rng.choice(empty, size=round(drop_empty * len(empty)), replace=False)] = False
    return np.flatnonzero(keep), pixels


def write_case_slices(
    prepared: PreparedCase,
    case: str,
    split: str,
    out: Path,
    *,
    orientations: Sequence[str],
    recipe: Sequence[str],
    context: int,
    drop_empty: float = 0.0,
    seed: int = 0,
    written: list[Path],
) -> list[dict[str, object]]:
    """Write every kept slice of every orientation; returns the manifest rows.

    Every path is appended to ``written`` before the file is opened, so the caller can
    remove a case's partial files when something fails.
    """
    rng = np.random.default_rng(seed)
    crop = json.dumps([list(pair) for pair in prepared.geometry.crop], separators=(",", ":"))
    zeros = np.zeros(prepared.geometry.shape, np.uint8)
    label = prepared.mask if prepared.mask is not None else zeros
    pictured = prepared.soft if prepared.soft is not None else label * np.uint8(255)
    rows = []
    for orientation in orientations:
        indices, pixels = _kept_slices(prepared, orientation, drop_empty if split == "train" else 0.0, rng)
        for index in indices:
            stem = stem_of(case, orientation, int(index))
            image_path, label_path, mask_path = case_paths(out, split, stem)
            image = slice_channels(prepared, orientation, int(index), recipe, context)
            label_slice = slice_image(label, orientation, int(index))
            lines = yolo_lines(label_slice) if pixels[index] else []
            written.extend((image_path, label_path, mask_path))
            tifffile.imwrite(image_path, image, **TIFF_OPTIONS)
            label_path.write_text("".join(f"{line}\n" for line in lines))
            cv2.imwrite(str(mask_path), np.ascontiguousarray(slice_image(pictured, orientation, int(index))))
            rows.append(
                {
                    "stem": stem,
                    "case": case,
                    "split": split,
                    "orientation": orientation,
                    "index": int(index),
                    "height": image.shape[1],
                    "width": image.shape[2],
                    "crop": crop,
                    "lesion_pixels": int(pixels[index]),
                    "instances": len(lines),
                }
            )
    return rows
