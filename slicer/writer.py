"""One prepared case as 2D files (TIFF images, YOLO labels, mask PNGs, manifest rows), and back.

:func:`write_case_slices` writes them; :func:`read_slice_image` reads one image back for
every consumer (both networks' predictors and datasets, fusion), and
:func:`read_source_volume` stacks one channel source (``t0``, ``t1``...) of a case's
slices back into its export-grid volume.

TIFFs are written with tifffile, zlib level 1: about half the size of raw pages for a
few milliseconds per slice, and readable both by tifffile and by OpenCV
(``cv2.imreadmulti``, what ultralytics uses). LZW and PackBits would need the optional
imagecodecs package to write or to read back with tifffile.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import tifffile

from runtime.errors import InputError
from runtime.files import save_nifti
from runtime.threads import map_in_parallel
from slicer.geometry import AXIS_OF, ORIENTATIONS, CaseGeometry, slice_image, volume_from_images
from slicer.io import load_mask
from slicer.labels import yolo_lines
from slicer.normalise import brightening_z
from slicer.prepare import PreparedCase, slice_channels

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "stem_of",
    "case_paths",
    "write_case_slices",
    "remove_files",
    "read_slice_image",
    "source_channel",
    "read_source_volume",
    "roi_name",
    "write_roi",
    "read_roi",
]

TIFF_OPTIONS = {"compression": "zlib", "compressionargs": {"level": 1}, "photometric": "minisblack"}
# Lesion-free slices with voxels brightening this much (robust z of the difference smoothed at
# CHANGE_SIGMA_MM) show enlarging lesions, scanner or registration artefacts: the hard negatives
# a model must learn to ignore, kept before quiet slices when empty slices are thinned out.
CHANGE_Z = 4.0
CHANGE_SIGMA_MM = 1.5


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


def _change_map(prepared: PreparedCase) -> np.ndarray:
    """Voxels that brighten markedly from t0 to t1 (all False without t0)."""
    normalised = prepared.normalised
    if "t0n" not in normalised:
        return np.zeros(prepared.geometry.shape, dtype=bool)
    sigma = CHANGE_SIGMA_MM / prepared.geometry.spacing
    return brightening_z(normalised["t1n"], normalised["t0n"], prepared.head, sigma) > CHANGE_Z


def _kept_slices(
    prepared: PreparedCase,
    orientation: str,
    drop_empty: float,
    rng: np.random.Generator,
    change: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Slice indices to write and their lesion pixel counts.

    ``drop_empty`` of the lesion-free slices are left out, those with the fewest ``change``
    voxels first (ties in random order): a thinned training set keeps its hard negatives.
    """
    axis = AXIS_OF[orientation]
    n = prepared.geometry.shape[axis]
    others = tuple(a for a in range(3) if a != axis)
    if prepared.mask is None:
        pixels = np.zeros(n, dtype=np.int64)
    else:
        pixels = prepared.mask.sum(axis=others, dtype=np.int64)
    keep = np.ones(n, dtype=bool)
    empty = np.flatnonzero(pixels == 0)
    if drop_empty > 0 and len(empty):
        empty = rng.permutation(empty)  # ties in random order
        changed = np.zeros(n, np.int64) if change is None else change.sum(axis=others, dtype=np.int64)
        quietest_first = empty[np.argsort(changed[empty], kind="stable")]
        keep[quietest_first[: round(drop_empty * len(empty))]] = False
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
    drop_empty = drop_empty if split == "train" else 0.0
    change = _change_map(prepared) if drop_empty > 0 else None
    kept = {
        orientation: _kept_slices(prepared, orientation, drop_empty, rng, change)
        for orientation in orientations
    }

    def write_slice(orientation: str, index: int) -> dict[str, object]:
        stem = stem_of(case, orientation, index)
        image_path, label_path, mask_path = case_paths(out, split, stem)
        image = slice_channels(prepared, orientation, index, recipe, context)
        lesion_pixels = int(kept[orientation][1][index])
        lines = yolo_lines(slice_image(label, orientation, index)) if lesion_pixels else []
        written.extend((image_path, label_path, mask_path))
        tifffile.imwrite(image_path, image, **TIFF_OPTIONS)
        label_path.write_text("".join(f"{line}\n" for line in lines))
        cv2.imwrite(str(mask_path), np.ascontiguousarray(slice_image(pictured, orientation, index)))
        return {
            "stem": stem,
            "case": case,
            "split": split,
            "orientation": orientation,
            "index": index,
            "height": image.shape[1],
            "width": image.shape[2],
            "crop": crop,
            "lesion_pixels": lesion_pixels,
            "instances": len(lines),
        }

    # zlib and the file system release the GIL: slices are written side by side, rows kept in order.
    slices = [(orientation, int(index)) for orientation, (indices, _) in kept.items() for index in indices]
    return list(map_in_parallel(lambda item: write_slice(*item), slices))


def read_slice_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """One exported slice as a uint8 ``(C, H, W)`` array, checking dtype and channel count."""
    try:
        image = tifffile.imread(path)
    except (OSError, ValueError) as error:
        raise InputError(path, f"cannot be read as TIFF ({error})") from None
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.dtype != np.uint8:
        raise InputError(path, f"expected a uint8 (C, H, W) image, got {image.dtype} {image.shape}")
    if channels is not None and image.shape[0] != channels:
        raise InputError(path, f"has {image.shape[0]} channels, expected {channels}")
    return image


def source_channel(recipe: Sequence[str], context: int, source: str) -> int | None:
    """Index of the centre-slice channel of ``source`` in images of ``recipe``; None if absent."""
    if source not in recipe:
        return None
    return list(recipe).index(source) * (2 * context + 1) + context


def read_source_volume(
    export: Path, rows: pd.DataFrame, shape: tuple[int, int, int], channel: int
) -> np.ndarray:
    """One channel of a case's exported slices stacked back into its uint8 export-grid volume.

    ``rows`` are the case's manifest rows. One complete orientation suffices (validation and
    test cases); where slices were left out (thinned training cases), the other orientations
    fill in, and voxels that no kept slice covers stay zero.
    """
    volume = np.zeros(shape, np.uint8)
    covered = np.zeros(shape, bool)
    for orientation in [o for o in ORIENTATIONS if o in set(rows["orientation"])]:
        chosen = rows[rows["orientation"] == orientation]
        images = {
            int(row.index): read_slice_image(case_paths(export, str(row.split), str(row.stem))[0])[channel]
            for row in chosen.itertuples(index=False)
        }
        stacked = volume_from_images(images, orientation, shape, np.uint8)
        present = volume_from_images(
            {index: np.ones(image.shape, bool) for index, image in images.items()}, orientation, shape, bool
        )
        fill = present & ~covered
        volume[fill], covered[fill] = stacked[fill], True
        if len(images) == shape[AXIS_OF[orientation]]:
            break
    return volume


def roi_name(case: str) -> str:
    """File name, under ``cases/``, of where a case's lesions may be (:attr:`PreparedCase.search`)."""
    return f"{case}_brain.nii.gz"


def write_roi(prepared: PreparedCase, path: Path) -> Path:
    """Save where lesions may be (the brain inside the joint field of view, less a thick-slice
    slab's end slices) on the export grid (uint8 0/1)."""
    return save_nifti(prepared.search.astype(np.uint8), prepared.geometry.export_affine, path)


def read_roi(export: Path, geometry: CaseGeometry) -> np.ndarray | None:
    """A case's region of interest on its export grid; None when the export recorded none."""
    name = (geometry.extra.get("brain_mask") or {}).get("file")
    if not name:
        return None
    roi, _ = load_mask(Path(export) / "cases" / name)
    if roi.shape != geometry.shape:
        raise InputError(
            Path(export) / "cases" / name, f"grid {roi.shape} is not the export grid {geometry.shape}"
        )
    return roi.astype(bool)
