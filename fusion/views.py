"""One case's views on the export grid, and their fusion there.

:func:`read_views` stacks a prediction folder's PNGs of one case back into one probability
volume per plane (the slice <-> volume relation is the export contract's,
:func:`slicer.geometry.volume_from_images`); :func:`read_baseline` reads the case's t0 and t1
back from the exported slices; :func:`fuse_case` fuses views into the case's mask on the export
grid (the vote, the region of interest, the old-lesion rule). ``reassemble`` maps the result
to the scan's own grid (:mod:`fusion.reassemble`); a model's validation record scores it there
(:mod:`fusion.record`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fusion.ensemble import LEAD, leader_views
from fusion.existing import drop_existing_lesions
from fusion.sources import export_volumes
from fusion.voting import fuse_views, on_common_scale
from runtime.errors import InputError
from runtime.lesions import MIN_LESION_MM3
from runtime.predictions import decode_probability
from slicer.geometry import ORIENTATIONS, CaseGeometry, volume_from_images

__all__ = ["read_probability_png", "read_views", "read_baseline", "fuse_case"]

READ_THREADS = 4  # PNG decoding releases the GIL; a few threads hide the file system latency


def read_probability_png(path: Path, height: int, width: int) -> np.ndarray:
    """One prediction PNG as uint8 (H, W): 8-bit single-channel and of the exported size."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(path, "unreadable PNG")
    if image.ndim != 2 or image.dtype != np.uint8:
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise InputError(
            path, f"not an 8-bit single-channel PNG ({image.dtype}, {channels} channel(s)); expected prob*255"
        )
    if image.shape != (height, width):
        raise InputError(
            path, f"size {image.shape[0]}x{image.shape[1]} differs from the exported slice {height}x{width}"
        )
    return image


def read_views(
    rows: pd.DataFrame, geometry: CaseGeometry, pred_dir: Path, available: set[str] | None = None
) -> dict[str, np.ndarray]:
    """One probability volume (float32 in [0, 1], export grid) per orientation of ``rows``.

    Args:
        rows: the manifest rows of one case.
        geometry: that case's geometry.
        pred_dir: folder of ``<stem>.png``; a missing slice counts as background (the caller
            refuses an incomplete folder unless told to fill it: :meth:`PredictionSource.check`).
        available: the PNG names in ``pred_dir`` (listed once per folder by the caller).
    """
    available = available if available is not None else set(os.listdir(pred_dir))
    present = rows[(rows["stem"] + ".png").isin(available)]
    if present.empty:
        raise InputError(pred_dir, f"no prediction for case '{rows['case'].iloc[0]}'")

    def read(row: tuple) -> np.ndarray:
        return read_probability_png(pred_dir / f"{row.stem}.png", int(row.height), int(row.width))

    with ThreadPoolExecutor(READ_THREADS) as pool:
        images = list(pool.map(read, present.itertuples(index=False)))
    views = {}
    for orientation in [o for o in ORIENTATIONS if o in set(rows["orientation"])]:
        chosen = (present["orientation"] == orientation).to_numpy()
        indices = present["index"].to_numpy()[chosen]
        picked = [image for image, keep in zip(images, chosen, strict=True) if keep]
        stacked = volume_from_images(
            dict(zip(indices.tolist(), picked, strict=True)), orientation, geometry.shape, np.uint8
        )
        views[orientation] = decode_probability(stacked)
    return views


def fuse_case(
    views: Sequence[np.ndarray],
    vote: str = "triplanar",
    min_votes: int | None = None,
    threshold: float | Sequence[float] = 0.5,
    min_size_mm3: float = MIN_LESION_MM3,
    spacing: float = 1.0,
    baseline: tuple[np.ndarray, np.ndarray] | None = None,
    planes: Sequence[str] | None = None,
    roi: np.ndarray | None = None,
    members: Sequence[int] | None = None,
    leader: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse a case's views on the export grid: ``(mask, prob)`` of the export grid.

    Args:
        vote: :data:`fusion.ensemble.FUSION_RULES`; ``lead`` needs ``members`` (the model of
            each view) and the ``leader`` (:func:`fusion.ensemble.leader_of`), whose own
            triplanar vote it runs.
        threshold: one value, or one per view (see :func:`fusion.voting.fuse_views`).
        planes: each view's orientation: several models' views of one plane merge before
            the vote (see :func:`fusion.voting.fuse_views`).
        baseline: ``(t0, t1)`` on the export grid: lesions already hyperintense at baseline
            are dropped (:func:`fusion.existing.drop_existing_lesions`); None keeps them.
        roi: where lesions may be (the brain both scans acquired, export grid): the views
            are zero outside it. None: everywhere.
    """
    if vote == LEAD:
        if members is None or leader is None or planes is None:
            raise ValueError("the lead rule needs each view's plane and model, and the leader")
        # On the scale of all the models' thresholds, which is the one the result maps back at.
        views, threshold = on_common_scale(views, threshold)
        views, planes = leader_views(views, planes, members, leader)
        vote = "triplanar"
    if roi is not None:
        views = [np.where(roi, view, np.float32(0)) for view in views]
    mask, prob = fuse_views(views, vote, min_votes, threshold, min_size_mm3, spacing, planes)
    if baseline is not None:
        mask = drop_existing_lesions(mask, *baseline, spacing=spacing, inside=roi).astype(np.uint8)
    return mask, prob


def read_baseline(
    export: Path, rows: pd.DataFrame, geometry: CaseGeometry
) -> tuple[np.ndarray, np.ndarray] | None:
    """The case's ``(t0, t1)`` export-grid volumes from its slices' centre channels (None without t0)."""
    volumes = export_volumes(export, rows, geometry, ("t0", "t1"))
    return None if volumes is None else (volumes["t0"], volumes["t1"])
