"""YOLO-seg labels: one polygon per 2D connected component (8-connectivity) of a mask slice.

Polygons follow pixel edges, so even a one-pixel lesion gets a valid polygon (its four
corners). The trick: upsample the component 2x (nearest), trace its outer contour through
the centres of the boundary sub-pixels, and map sub-pixel ``k`` to pixel edge ``ceil(k/2)``
(sub-pixel 2i is the left half of pixel i, whose left edge is i; 2i+1 the right half,
right edge i+1).

>>> import numpy as np
>>> mask = np.zeros((4, 5), np.uint8); mask[1, 2] = 1
>>> yolo_lines(mask)
['0 0.4 0.25 0.4 0.5 0.6 0.5 0.6 0.25']
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["component_polygons", "count_components", "yolo_lines"]

NEW_LESION_CLASS = 0


def count_components(mask: np.ndarray) -> int:
    """Number of 8-connected components of a 2D mask."""
    count, _ = cv2.connectedComponents(np.ascontiguousarray(mask > 0, dtype=np.uint8), connectivity=8)
    return count - 1


def _edge_polygon(component: np.ndarray) -> np.ndarray:
    """Outer polygon (x, y in pixel-edge units, relative to the array) of one component."""
    upsampled = np.kron(component, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(upsampled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=len)[:, 0, :]
    return (contour + 1) // 2  # ceil(k / 2)


def component_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """One polygon per 8-connected component: (N, 2) float arrays of (x, y), N >= 3, in pixels."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        np.ascontiguousarray(mask > 0, dtype=np.uint8), connectivity=8
    )
    polygons = []
    for label in range(1, count):
        x, y, w, h = stats[label, :4]
        component = (labels[y : y + h, x : x + w] == label).astype(np.uint8)
        polygons.append((_edge_polygon(component) + [x, y]).astype(np.float64))
    return polygons


def yolo_lines(mask: np.ndarray) -> list[str]:
    """``"0 x1 y1 x2 y2 ..."`` per component, coordinates normalised by width and height."""
    height, width = mask.shape
    lines = []
    for polygon in component_polygons(mask):
        normalised = np.clip(polygon / [width, height], 0.0, 1.0)
        lines.append(" ".join([str(NEW_LESION_CLASS), *(f"{v:.6g}" for v in normalised.ravel())]))
    return lines
