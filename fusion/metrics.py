"""MSSEG-2 scores on arrays: lesion detection, lesion F1, Dice, false positives.

The MSSEG-2 scores were computed by Anima's ``animaSegPerfAnalyzer``
(Inria-Empenn/Anima-Public, ``segmentation_performance_analyzer/animaSegPerfCAnalyzer.cxx``
and ``animaSegPerfApp.cxx``). Its rules are re-implemented here from that source, no code
copied:

- a lesion is a face-connected (6-connected) component of at least
  ``floor(3 / voxel volume) + 1`` voxels (strictly larger than 3 mm³), in the reference and
  the prediction alike; lesions are numbered by size, largest first, as ITK relabels them;
- the *overlap table* counts voxels per (reference lesion, predicted lesion); row and
  column 0 are each side's background, which includes components too small to be lesions;
- a reference lesion is *detected* when (alpha) more than 10% of it lies in predicted
  lesions, then the predicted lesions overlapping it, largest overlap first, are examined
  until they hold 65% (gamma) of those covered voxels: the lesion is missed as soon as one of
  them has more than 70% (beta) of its voxels in the reference's *background* (voxels in other
  reference lesions are not outside). Anima stops after as many components as the reference
  has lesions plus one, and then counts the lesion as detected;
- lesion precision (Anima's PPVL) is the same test on the transposed table: a predicted lesion
  is a true positive when the reference lesions detect it; a prediction without any lesion has
  precision 0, not 0/0 (Anima since its commit 58cfe530 of July 2021, "Prevent wrong nan values
  in lesion detection metrics when null tested segmentation", before MSSEG-2 was scored), so a
  method that finds nothing scores 0 and stays in the mean; sensitivity is 0/0 (NaN) without
  reference lesion; F1 = 2PS / (P + S);
- Dice on voxels; on a case with no reference lesion, Dice, sensitivity and F1 are undefined
  (NaN) and the case is scored by its predicted lesions, all false positives (number, mm³).

Where reference lesions exist and nothing is detected F1 is 0 (P = S = 0), so that a mean over
cases counts a case with lesions that a method missed entirely.

>>> import numpy as np
>>> gt = np.zeros((10, 10, 10), np.uint8); gt[2:5, 2:5, 2:5] = 1
>>> lesion_detection(gt, gt, (1.0, 1.0, 1.0))
(1, 1)
>>> score_case(gt, gt, (1.0, 1.0, 1.0))["f1"]
1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from runtime.lesions import MIN_LESION_MM3, label_lesions

__all__ = [
    "ALPHA",
    "BETA",
    "GAMMA",
    "Lesions",
    "Matching",
    "SIZE_BINS_MM3",
    "detected_lesions",
    "detection_by_size",
    "dice",
    "lesion_detection",
    "match_lesions",
    "min_lesion_voxels",
    "overlap_table",
    "score_case",
    "score_lesions",
]

ALPHA = 0.1  # more than this fraction of a lesion must be covered
BETA = 0.7  # an examined component may have at most this fraction in the other side's background
GAMMA = 0.65  # components are examined until they hold this fraction of the covered voxels

Spacing = tuple[float, ...] | np.ndarray


def min_lesion_voxels(spacing: Spacing) -> int:
    """Fewest voxels of a lesion: ``floor(3 mm³ / voxel volume) + 1``, Anima's count rule.

    >>> min_lesion_voxels((1.0, 1.0, 1.0)), min_lesion_voxels((0.5, 0.5, 3.0))
    (4, 5)
    """
    voxel_mm3 = math.prod(float(s) for s in spacing)  # multiplied in axis order, as ITK's spacing
    return math.floor(MIN_LESION_MM3 / voxel_mm3) + 1


@dataclass(frozen=True)
class Lesions:
    """A mask and its MSSEG-2 lesions, labelled once and reused for every comparison."""

    mask: np.ndarray  # bool
    labels: np.ndarray  # 0 = background (and components too small), lesions 1..n, largest first
    n: int
    sizes: np.ndarray  # voxels per label, index 0 unused (0)
    centroids: np.ndarray  # (n, 3) mean voxel index of each lesion, in label order

    @classmethod
    def of(cls, mask: np.ndarray, spacing: Spacing) -> Lesions:
        components, count = label_lesions(mask, spacing, min_volume_mm3=0.0)  # every component
        voxels = np.flatnonzero(components)  # the rest works on lesion voxels only
        ids = components.reshape(-1)[voxels]
        sizes = np.bincount(ids, minlength=count + 1)
        where = np.unravel_index(voxels, components.shape)
        # ITK numbers components in scan order (first axis fastest), then sorts them by size:
        # ties in overlap are examined in that order
        first = np.full(count + 1, components.size)
        np.minimum.at(first, ids, np.ravel_multi_index(where, components.shape, order="F"))
        kept = np.flatnonzero(sizes >= min_lesion_voxels(spacing))
        kept = kept[np.lexsort((first[kept], -sizes[kept]))]
        new_ids = np.zeros(count + 1, np.uint32)
        new_ids[kept] = np.arange(1, len(kept) + 1, dtype=np.uint32)
        labels = np.zeros(components.shape, np.uint32)
        labels.reshape(-1)[voxels] = new_ids[ids]
        sums = [np.bincount(new_ids[ids], weights=axis, minlength=len(kept) + 1)[1:] for axis in where]
        centroids = np.stack(sums, axis=1) / sizes[kept, None]
        return cls(np.asarray(mask) > 0, labels, len(kept), np.concatenate([[0], sizes[kept]]), centroids)

    def describe(self, to_world: np.ndarray, voxel_mm3: float) -> list[dict[str, float | int]]:
        """One record per lesion, in label order: id, volume (mm³), centroid (world mm).

        ``to_world``: the affine from this mask's voxel indices to millimetres.
        """
        world = to_world[:3, :3] @ self.centroids.T + to_world[:3, 3:4] if self.n else np.empty((3, 0))
        return [
            {
                "lesion": label,
                "volume_mm3": float(self.sizes[label]) * voxel_mm3,
                **dict(zip(("x_mm", "y_mm", "z_mm"), map(float, world[:, label - 1]), strict=True)),
            }
            for label in range(1, self.n + 1)
        ]


@dataclass(frozen=True)
class Matching:
    """How a prediction's lesions meet a reference's: the overlap table and both tests."""

    table: np.ndarray  # voxels per (reference label, predicted label), 0 = background
    detected: np.ndarray  # per reference lesion 1..n: found by the prediction
    true_positive: np.ndarray  # per predicted lesion 1..m: found by the reference (precision)


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """Voxel-wise Dice; NaN when both masks are empty."""
    reference, prediction = np.asarray(reference) > 0, np.asarray(prediction) > 0
    total = int(reference.sum()) + int(prediction.sum())
    return 2.0 * int(np.count_nonzero(reference & prediction)) / total if total else float("nan")


def overlap_table(reference: Lesions, prediction: Lesions) -> np.ndarray:
    """Anima's overlap table, ``(n_ref + 1) x (n_pred + 1)``: voxels per pair of labels.

    Row 0 holds each predicted lesion's voxels in the reference's background, column 0 each
    reference lesion's voxels in the prediction's; ``[0, 0]`` is left at 0 (no rule uses it).
    """
    either = (reference.labels > 0) | (prediction.labels > 0)
    columns = prediction.n + 1
    pairs = reference.labels[either].astype(np.int64) * columns + prediction.labels[either]
    return np.bincount(pairs, minlength=(reference.n + 1) * columns).reshape(reference.n + 1, columns)


def detected_lesions(
    table: np.ndarray, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA
) -> np.ndarray:
    """Per row lesion 1..n of ``table``: detected by the column lesions (``table.T`` for precision).

    Ratios are computed as Anima computes them (divisions, weights summed in order), so that
    boundary cases fall on the same side.
    """
    sizes = table.sum(axis=1)[1:]
    shared = table[1:, 1:]
    covered = shared.sum(axis=1)
    stray = table[0, 1:] / table.sum(axis=0)[1:] > beta  # mostly in the row side's background
    examined_at_most = table.shape[0]  # Anima's loop bound: row lesions + 1
    found = np.zeros(len(sizes), dtype=bool)
    for row in np.flatnonzero(covered / sizes > alpha):  # alpha first
        # Components without overlap sort last, after the weights already sum to 1: never examined.
        partners = np.flatnonzero(shared[row])
        partners = partners[np.argsort(-shared[row, partners], kind="stable")][:examined_at_most]
        weights = shared[row, partners] / covered[row]
        before = np.concatenate([[0.0], np.cumsum(weights)[:-1]])  # share held before each one
        found[row] = not stray[partners[before < gamma]].any()
    return found


def match_lesions(
    reference: Lesions, prediction: Lesions, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA
) -> Matching:
    """Both detection tests of ``prediction`` against ``reference`` (both already labelled)."""
    table = overlap_table(reference, prediction)
    return Matching(
        table, detected_lesions(table, alpha, beta, gamma), detected_lesions(table.T, alpha, beta, gamma)
    )


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
    return int(match_lesions(ref, pred, alpha, beta, gamma).detected.sum()), ref.n


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def score_lesions(
    reference: Lesions, prediction: Lesions, spacing: Spacing, matching: Matching | None = None
) -> dict[str, float | int]:
    """Every score of one segmentation against one reference (both already labelled).

    ``matching`` is :func:`match_lesions` of the pair, when the caller already has it.
    """
    matching = matching or match_lesions(reference, prediction)
    voxel_mm3 = float(np.prod(spacing))
    detected, hits = int(matching.detected.sum()), int(matching.true_positive.sum())
    sensitivity = _ratio(detected, reference.n)
    precision = _ratio(hits, prediction.n) if prediction.n else 0.0  # Anima: PPVL 0 for a null prediction
    empty = reference.n == 0
    if empty:
        f1 = float("nan")
    elif detected + hits == 0:
        f1 = 0.0  # lesions to find, none found (Anima: 0/0)
    else:
        f1 = 2 * precision * sensitivity / (precision + sensitivity)
    false_positive = ~matching.true_positive
    return {
        "dice": float("nan") if empty else dice(reference.mask, prediction.mask),
        "f1": f1,
        "sensitivity": sensitivity,
        "precision": precision,
        "ref_lesions": reference.n,
        "pred_lesions": prediction.n,
        "detected": detected,
        "fp_lesions": int(false_positive.sum()),
        "fp_volume_mm3": float(prediction.sizes[1:][false_positive].sum()) * voxel_mm3,
        "ref_volume_mm3": float(reference.mask.sum()) * voxel_mm3,
        "pred_volume_mm3": float(prediction.mask.sum()) * voxel_mm3,
    }


def score_case(gt: np.ndarray, pred: np.ndarray, spacing: Spacing) -> dict[str, float | int]:
    """Scores of ``pred`` against ``gt`` (same grid, voxel size ``spacing`` in mm).

    Keys: dice, f1, sensitivity, precision (lesion-wise), ref_lesions, pred_lesions, detected,
    fp_lesions and fp_volume_mm3 (predicted lesions that match no reference lesion),
    ref_volume_mm3, pred_volume_mm3. Dice, F1 and sensitivity are NaN without reference lesion;
    precision is 0 without predicted lesion (so F1 is 0 when the reference has lesions).
    """
    if np.shape(gt) != np.shape(pred):
        raise ValueError(f"shapes differ: {np.shape(gt)} and {np.shape(pred)}")
    return score_lesions(Lesions.of(gt, spacing), Lesions.of(pred, spacing), spacing)


SIZE_BINS_MM3 = (10.0, 50.0, 200.0)  # detection by lesion size: < 10, 10-50, 50-200, > 200 mm³


def detection_by_size(
    reference: np.ndarray, prediction: np.ndarray, spacing: Spacing, edges: Sequence[float] = SIZE_BINS_MM3
) -> list[dict[str, float | int | str]]:
    """Reference lesions and how many ``prediction`` detects (MSSEG-2 rules), per size bin (mm³)."""
    ref = Lesions.of(reference, spacing)
    detected = match_lesions(ref, Lesions.of(prediction, spacing)).detected
    volumes = ref.sizes[1:] * float(np.prod(spacing))
    bins = np.digitize(volumes, edges)
    names = (
        [f"< {edges[0]:g}"]
        + [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
        + [f"> {edges[-1]:g}"]
    )
    return [
        {
            "size_mm3": name,
            "lesions": int(np.sum(bins == index)),
            "detected": int(np.sum(detected[bins == index])),
        }
        for index, name in enumerate(names)
    ]
