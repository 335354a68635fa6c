"""MSSEG-2 scores on arrays: lesion detection, lesion F1, Dice, false positives.

Re-implemented from the published description of the challenge's evaluation (Commowick et
al. 2018, Sci. Rep. 8, "Objective evaluation of multiple sclerosis lesion segmentation
using a data management and processing infrastructure"; MSSEG-2 2021 evaluation rules), not
copied from its code:

- a lesion is a 6-connected component strictly larger than 3 mm³
  (:func:`slicer.lesions.label_lesions`), in the reference and in the prediction alike;
- a reference lesion ``L`` is *detected* when the prediction's lesions cover more than
  ``alpha`` (10%) of it, and the predicted lesions overlapping ``L``, taken largest overlap
  first, add up to at least ``gamma`` (65%) of the covered voxels before one of them lies
  more than ``beta`` (70%) outside ``L`` (such a component ends the count: it is a
  different, larger object that happens to touch ``L``);
- lesion sensitivity = detected reference lesions / reference lesions; lesion precision =
  the same test with the roles swapped; F1 = 2PS / (P + S);
- Dice on voxels; on a case with no reference lesion, Dice, sensitivity and F1 are
  undefined (NaN) and the case is scored by its false-positive lesions (number, mm³).

>>> import numpy as np
>>> gt = np.zeros((10, 10, 10), np.uint8); gt[2:5, 2:5, 2:5] = 1
>>> lesion_detection(gt, gt, (1.0, 1.0, 1.0))
(1, 1)
>>> score_case(gt, gt, (1.0, 1.0, 1.0))["f1"]
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slicer.lesions import label_lesions

__all__ = ["ALPHA", "BETA", "GAMMA", "Lesions", "dice", "lesion_detection", "score_lesions", "score_case"]

ALPHA = 0.1  # more than this fraction of a lesion must be covered
BETA = 0.7  # an overlapping component may lie at most this fraction outside the lesion
GAMMA = 0.65  # the counted components must reach this fraction of the covered voxels

Spacing = tuple[float, ...] | np.ndarray


@dataclass(frozen=True)
class Lesions:
    """A mask and its MSSEG-2 lesions, labelled once and reused for every comparison."""

    mask: np.ndarray  # bool
    labels: np.ndarray  # 0 = background, lesions 1..n
    n: int
    sizes: np.ndarray  # voxels per label, index 0 unused

    @classmethod
    def of(cls, mask: np.ndarray, spacing: Spacing) -> Lesions:
        labels, n = label_lesions(mask, spacing)
        return cls(np.asarray(mask) > 0, labels, n, np.bincount(labels.ravel(), minlength=n + 1))


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """Voxel-wise Dice; NaN when both masks are empty."""
    reference, prediction = np.asarray(reference) > 0, np.asarray(prediction) > 0
    total = int(reference.sum()) + int(prediction.sum())
    return 2.0 * int(np.count_nonzero(reference & prediction)) / total if total else float("nan")


def _overlaps(first: Lesions, second: Lesions) -> np.ndarray:
    """Rows (first label, second label, shared voxels) for every pair of lesions that overlap."""
    both = (first.labels > 0) & (second.labels > 0)
    pairs = np.stack([first.labels[both], second.labels[both]], axis=1).astype(np.int64)
    if len(pairs) == 0:
        return np.zeros((0, 3), np.int64)
    unique, counts = np.unique(pairs, axis=0, return_counts=True)
    return np.column_stack([unique, counts])


def _detected(
    reference: Lesions, prediction: Lesions, overlaps: np.ndarray, alpha: float, beta: float, gamma: float
) -> np.ndarray:
    """Boolean per reference lesion (index 0 unused): detected by ``prediction``."""
    detected = np.zeros(reference.n + 1, dtype=bool)
    for lesion in np.unique(overlaps[:, 0]):
        rows = overlaps[overlaps[:, 0] == lesion]
        rows = rows[np.argsort(-rows[:, 2], kind="stable")]  # largest overlap first
        covered = int(rows[:, 2].sum())
        if covered <= alpha * reference.sizes[lesion]:
            continue
        counted = 0
        for component, shared in rows[:, 1:]:
            if prediction.sizes[component] - shared > beta * prediction.sizes[component]:
                break
            counted += shared
            if counted >= gamma * covered:
                detected[lesion] = True
                break
    return detected


def lesion_detection(
    reference: np.ndarray,
    prediction: np.ndarray,
    spacing: Spacing,
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
) -> tuple[int, int]:
    """``(n_detected, n_lesions)``: how many lesions of ``reference`` ``prediction`` detects.

    Swap the arguments for lesion precision.
    """
    ref, pred = Lesions.of(reference, spacing), Lesions.of(prediction, spacing)
    found = _detected(ref, pred, _overlaps(ref, pred), alpha, beta, gamma)
    return int(found.sum()), ref.n


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def score_lesions(reference: Lesions, prediction: Lesions, spacing: Spacing) -> dict[str, float | int]:
    """Every score of one segmentation against one reference (both already labelled)."""
    voxel_mm3 = float(np.prod(spacing))
    overlaps = _overlaps(reference, prediction)
    true_positive = _detected(reference, prediction, overlaps, ALPHA, BETA, GAMMA)
    hits = _detected(prediction, reference, overlaps[:, [1, 0, 2]], ALPHA, BETA, GAMMA)
    sensitivity = _ratio(int(true_positive.sum()), reference.n)
    precision = _ratio(int(hits.sum()), prediction.n)
    empty = reference.n == 0
    if empty:
        f1 = float("nan")
    elif prediction.n == 0 or sensitivity + precision == 0:
        f1 = 0.0  # lesions to find, none found
    else:
        f1 = 2 * precision * sensitivity / (precision + sensitivity)
    false_positive = ~hits[1:]
    return {
        "dice": float("nan") if empty else dice(reference.mask, prediction.mask),
        "f1": f1,
        "sensitivity": sensitivity,
        "precision": precision,
        "ref_lesions": reference.n,
        "pred_lesions": prediction.n,
        "detected": int(true_positive.sum()),
        "fp_lesions": int(false_positive.sum()),
        "fp_volume_mm3": float(prediction.sizes[1:][false_positive].sum()) * voxel_mm3,
        "ref_volume_mm3": float(reference.mask.sum()) * voxel_mm3,
        "pred_volume_mm3": float(prediction.mask.sum()) * voxel_mm3,
    }


def score_case(gt: np.ndarray, pred: np.ndarray, spacing: Spacing) -> dict[str, float | int]:
    """Scores of ``pred`` against ``gt`` (same grid, voxel size ``spacing`` in mm).

    Keys: dice, f1, sensitivity, precision (lesion-wise), ref_lesions, pred_lesions, detected,
    fp_lesions and fp_volume_mm3 (predicted lesions that match no reference lesion),
    ref_volume_mm3, pred_volume_mm3. Dice, F1 and sensitivity are NaN without reference lesion.
    """
    if np.shape(gt) != np.shape(pred):
        raise ValueError(f"shapes differ: {np.shape(gt)} and {np.shape(pred)}")
    return score_lesions(Lesions.of(gt, spacing), Lesions.of(pred, spacing), spacing)
