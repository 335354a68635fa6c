"""What counts as a lesion (and the box around a mask), defined once for every package.

The MSSEG-2 evaluation rules define a lesion as a 6-connected component of the mask
strictly larger than 3 mm³. The phantom, the export summary, the voting and the metrics
all use :func:`label_lesions` so they agree on that definition.
"""

from __future__ import annotations

import cc3d
import numpy as np

__all__ = [
    "MIN_LESION_MM3",
    "ENLARGING_SHARE",
    "ENLARGING_GROWTH",
    "label_lesions",
    "count_lesions",
    "remove_small_lesions",
    "bounding_box",
]

MIN_LESION_MM3 = 3.0
# How old lesions evolve, in the phantom and in simulated pairs of real scans alike: this share
# of them enlarges, by a linear growth factor in this range from t0 to t1.
ENLARGING_SHARE = 0.3
ENLARGING_GROWTH = (1.25, 1.6)


def label_lesions(
    mask: np.ndarray,
    spacing: tuple[float, ...] | np.ndarray = (1.0, 1.0, 1.0),
    min_volume_mm3: float = MIN_LESION_MM3,
    connectivity: int = 6,
) -> tuple[np.ndarray, int]:
    """Label connected components strictly larger than ``min_volume_mm3``.

    Returns the label volume (uint32, 0 = background, lesions numbered 1..n) and n.

    >>> m = np.zeros((5, 5, 5), np.uint8); m[0, 0, :4] = 1; m[3, 3, 3] = 1
    >>> label_lesions(m)[1]   # 4 mm³ kept, 1 mm³ dropped
    1
    """
    labels = cc3d.connected_components(np.ascontiguousarray(mask > 0), connectivity=connectivity)
    voxel_mm3 = float(np.prod(spacing))
    sizes = np.bincount(labels.ravel())
    keep = sizes * voxel_mm3 > min_volume_mm3
    keep[0] = False
    new_ids = np.zeros(len(sizes), dtype=np.uint32)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return new_ids[labels], int(keep.sum())


def count_lesions(mask: np.ndarray, spacing: tuple[float, ...] | np.ndarray = (1.0, 1.0, 1.0)) -> int:
    """Number of lesions by the MSSEG-2 definition."""
    return label_lesions(mask, spacing)[1]


def remove_small_lesions(
    mask: np.ndarray,
    spacing: tuple[float, ...] | np.ndarray = (1.0, 1.0, 1.0),
    min_volume_mm3: float = MIN_LESION_MM3,
) -> np.ndarray:
    """Binary mask without the components of ``min_volume_mm3`` or less."""
    return label_lesions(mask, spacing, min_volume_mm3)[0] > 0


def bounding_box(mask: np.ndarray, margin: int) -> np.ndarray:
    """``[start, stop)`` per axis (3x2) of the mask's bounding box grown by ``margin`` voxels (clipped to the volume).

    An empty mask gives the whole volume.
    """
    shape = np.asarray(mask.shape)
    if not mask.any():
        return np.stack([np.zeros(3, int), shape], axis=1)
    box = np.array(
        [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[[0, -1]] for axis in range(3)]
    )
    start = np.maximum(box[:, 0] - margin, 0)
    stop = np.minimum(box[:, 1] + 1 + margin, shape)
    return np.stack([start, stop], axis=1)
