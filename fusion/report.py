"""Figures of an evaluation: one overview per case, one score plot per folder.

Matplotlib with the Agg backend and its bundled DejaVu font: nothing is displayed or
downloaded. The case figure follows the project's Figure 2: t0, t1, ground truth and
prediction at the axial slice with the most new-lesion voxels, lesions outlined (ground
truth green, prediction red). Volumes are made canonical (RAS) and shown with
:func:`slicer.geometry.slice_image`, as a viewer shows them.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from runtime.files import atomic_path
from slicer.geometry import AXIS_OF, slice_image, to_canonical_array  # noqa: E402
from slicer.io import spacing_of  # noqa: E402

__all__ = ["busiest_axial_slice", "case_figure", "score_plot"]

GT_COLOUR, PRED_COLOUR = "#2ca02c", "#d62728"


def busiest_axial_slice(*masks: np.ndarray) -> int:
    """Axial index (RAS z) with the most voxels of the first non-empty mask; else the middle."""
    for mask in masks:
        per_slice = np.asarray(mask).sum(axis=(0, 1))
        if per_slice.any():
            return int(np.argmax(per_slice))
    return masks[0].shape[AXIS_OF["axial"]] // 2


def _panel(axis: plt.Axes, image: np.ndarray | None, aspect: float, title: str) -> None:
    axis.set_title(title, fontsize=9)
    axis.axis("off")
    if image is None:
        axis.text(0.5, 0.5, "not available", ha="center", va="center", transform=axis.transAxes)
        return
    axis.imshow(image, cmap="gray", aspect=aspect, interpolation="nearest")


def _outline(axis: plt.Axes, mask: np.ndarray, colour: str) -> None:
    if mask.any():
        axis.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=0.8)


def case_figure(
    t1: np.ndarray,
    t0: np.ndarray | None,
    gt: np.ndarray,
    pred: np.ndarray,
    affine: np.ndarray,
    path: Path | str,
    title: str = "",
) -> Path:
    """Write the four-panel overview of one case (volumes on one grid, ``affine`` its affine)."""
    volumes = [v if v is not None and v.shape == t1.shape else None for v in (t1, t0, gt, pred)]
    t1c, t0c, gtc, predc = (to_canonical_array(v, affine)[0] if v is not None else None for v in volumes)
    spacing = spacing_of(to_canonical_array(t1, affine)[1])
    index = busiest_axial_slice(gtc > 0, predc > 0)
    image = slice_image(t1c, "axial", index)
    gt_slice, pred_slice = slice_image(gtc > 0, "axial", index), slice_image(predc > 0, "axial", index)
    aspect = float(spacing[1] / spacing[0])  # rows run along y, columns along x
    figure, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    _panel(axes[0], slice_image(t0c, "axial", index) if t0c is not None else None, aspect, "t0 (baseline)")
    _panel(axes[1], image, aspect, "t1 (follow-up)")
    _panel(axes[2], image, aspect, f"ground truth ({int(gt_slice.sum())} px)")
    _outline(axes[2], gt_slice, GT_COLOUR)
    _panel(axes[3], image, aspect, f"prediction ({int(pred_slice.sum())} px)")
    _outline(axes[3], gt_slice, GT_COLOUR)
    _outline(axes[3], pred_slice, PRED_COLOUR)
    figure.suptitle(f"{title}  axial slice {index}", fontsize=10)
    figure.tight_layout()
    return _save(figure, Path(path))


def score_plot(rows: pd.DataFrame, path: Path | str) -> Path:
    """Dice and F1 per case (dots); cases without new lesion shown by their FP lesion count."""
    rows = rows.sort_values("case").reset_index(drop=True)
    x = np.arange(len(rows))
    empty = (rows["ref_lesions"] == 0).to_numpy()
    figure, axis = plt.subplots(figsize=(max(6.0, 0.25 * len(rows) + 2), 3.6))
    axis.plot(x[~empty], rows["dice"][~empty], "o", label="Dice", color="#1f77b4")
    axis.plot(x[~empty], rows["f1"][~empty], "s", label="lesion F1", color="#ff7f0e", fillstyle="none")
    for position, count in zip(x[empty], rows["fp_lesions"][empty], strict=True):
        axis.axvspan(position - 0.4, position + 0.4, color="0.9")
        axis.text(
            position, 0.5, f"no new lesion\n{count} FP", ha="center", va="center", fontsize=6, rotation=90
        )
    axis.set_xticks(x, rows["case"], rotation=90, fontsize=7)
    axis.set_ylim(-0.02, 1.02)
    axis.set_ylabel("score")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return _save(figure, Path(path))


def _save(figure: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)
    return path
