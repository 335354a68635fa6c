"""Fusing the views of a case into one 3D new-lesion mask.

A *view* is one probability volume on the export grid: one orientation (axial, coronal,
sagittal) of one prediction folder, its slices stacked back with
:func:`slicer.geometry.volume_from_images`. Two folders x three planes = six views. A view
*marks* a voxel when its probability is strictly above ``threshold``.

Several models: given each view's orientation (``planes``), the views of one orientation are
first merged into one, the voxel-wise maximum of their (calibrated) probabilities: a plane
marks a voxel when any model marks it there. The vote is then between orientations, whose
errors are the ones that differ (two models on one plane share its blind spots): a lesion of
a two-model ensemble needs 2 of 3 planes, as a single model's does. A vote of 3 of the 6
views instead drops a lesion that one model sees on two planes and the other misses, and counts
two models on one plane as two votes (docs/results.md: the ensemble before and after).

The vote modes, on ``n`` views ``p_1..p_n`` (after that merge; ``k = min(min_votes, n)``; by
default half the views, rounded up: 2 of 3 planes as in Hitziger et al.):

- ``none``: no vote: the union of the views; ``prob = max_i p_i``, ``mask = prob > threshold``.
- ``mean``: ``prob = mean_i p_i``, ``mask = prob > threshold``.
- ``majority``: voxel-wise: ``mask`` = voxels marked by at least ``k`` views; ``prob = mean_i p_i``.
- ``triplanar``: lesion-wise voting after Hitziger et al. 2022 (Front. Neurosci. 16, "Triplanar
  U-Net with lesion-wise voting for the segmentation of new lesions on longitudinal MRI
  studies"). Candidate lesions are the 6-connected components of the union of the views'
  binary maps. A view *detects* a candidate when its own binary map overlaps it; a
  candidate survives when at least ``k`` views detect it. Which of its voxels a survivor
  keeps is ``keep``:

  - ``union`` (default): all of them, i.e. the union of its detecting views' marks; the fused
    probability inside a candidate is the maximum over the views that detected it;
  - ``mean`` (Hitziger et al.'s fused probability, the rule before): the voxels where the mean
    over the views that detected it exceeds ``threshold``. Two planes that find a small lesion
    one voxel apart average to below it and erase the lesion, and a candidate whose extent the
    mean splits into pieces keeps only the largest (one hypothesis, one lesion).

  Elsewhere the fused probability is the mean of all views. Measured with
  ``benchmarks/bench_vote_rules.py`` (UNeXt, 10 epochs, held-out phantoms; docs/nnunet.md):
  ``union`` raised Dice from 0.693 to 0.723 on 16 aligned patients (lesion F1 0.740 to 0.751,
  false-positive lesions per empty case 1.75 to 2.0, against 4.5 without a vote) and kept it
  on 8 misaligned ones (0.666 to 0.667; F1 0.627 to 0.613, no false positive either way).

A *3D view* (a volumetric network's probability volume, e.g. nnU-Net's through
:mod:`fusion.volumes`) has the orientation :data:`VOLUME` (``"3d"``) in ``planes``: 3D views merge
like the views of one plane, then count as one voter beside the planes (3 planes + 3D: ``k`` = 2 of
4 by default). In ``triplanar``, ``volume_rule`` says how it weighs: ``voter`` (default), one voter
like a plane; ``tiebreak``, at exactly ``k`` votes the 3D view must be among them (2 of 4 only with
the 3D view, else 3 of 4), so two planes without it no longer pass. Measured as above, with the
subtraction baseline standing in for the 3D network: ``voter`` 0.752 lesion F1 against 0.719 for
``tiebreak`` on the aligned patients (it dropped a true lesion two planes saw), equal on the
misaligned ones. In the other modes a 3D view is one more view.

Models are calibrated differently (a short-trained YOLO's confidence rarely passes 0.5), so
``threshold`` may also give one value per view: each view is then first mapped piecewise
linearly so that its own threshold lands on 0.5 (0 and 1 stay put, order is kept), and
the fusion runs at 0.5. A view marks exactly the voxels it marked at its own threshold.
Equal values are the same as one threshold.

Every mode then drops lesions of ``min_size_mm3`` or less (6-connected, the MSSEG-2 rule,
:func:`runtime.lesions.remove_small_lesions` with the export spacing; 0 keeps everything).
On identical views every mode returns that view's binary map exactly (minus lesions below
the size rule), so exporting masks and fusing them back is lossless.

>>> import numpy as np
>>> view = np.zeros((8, 8, 8), np.float32); view[2:4, 2:4, 2:4] = 0.9
>>> noise = view.copy(); noise[6, 6, 6] = 1.0          # seen by one view only
>>> mask, prob = fuse_views([view, view, noise], "triplanar", min_votes=2, min_size_mm3=0)
>>> int(mask.sum()), bool(mask[6, 6, 6])
(8, False)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import cc3d
import numpy as np

from runtime.errors import InputError
from runtime.lesions import MIN_LESION_MM3, remove_small_lesions

__all__ = [
    "VOTE_MODES",
    "Vote",
    "VOLUME",
    "VOLUME_RULES",
    "VolumeRule",
    "KEEP_RULES",
    "Keep",
    "fuse_views",
    "lesion_votes",
    "calibrate",
    "on_common_scale",
    "default_min_votes",
    "check_min_votes",
    "COUNTING_VOTES",
    "MAX_VOTERS",
    "merge_planes",
    "operating_level",
]

Vote = Literal["none", "mean", "majority", "triplanar"]
VOTE_MODES: tuple[str, ...] = ("none", "mean", "majority", "triplanar")
# The modes a vote count applies to; "lead" (fusion.ensemble) counts each member's own planes.
COUNTING_VOTES: tuple[str, ...] = ("majority", "triplanar", "lead")
MAX_VOTERS = 4  # three planes and a 3D view
# The orientation of a volumetric view (a 3D network's probability volume, e.g. nnU-Net's).
VOLUME = "3d"
VolumeRule = Literal["voter", "tiebreak"]
VOLUME_RULES: tuple[str, ...] = ("voter", "tiebreak")
Keep = Literal["union", "mean"]
KEEP_RULES: tuple[str, ...] = ("union", "mean")


def operating_level(threshold: float | Sequence[float]) -> float:
    """The probability above which the fused ``prob`` of :func:`fuse_views` is a lesion.

    >>> operating_level(0.3), operating_level([0.4, 0.4]), operating_level([0.5, 0.25])
    (0.3, 0.4, 0.5)
    """
    if np.isscalar(threshold):
        return float(threshold)
    return float(threshold[0]) if len(set(threshold)) == 1 else 0.5


def check_min_votes(min_votes: int | None, vote: str, planes: Sequence[str]) -> None:
    """Refuse, before any work, a vote count above the voters ``planes`` give (a 3D view is
    one voter, the models of one plane merge into one).

    >>> check_min_votes(3, "triplanar", ["axial", "coronal", "sagittal", "axial"])
    >>> check_min_votes(2, "triplanar", ["axial"])
    Traceback (most recent call last):
    runtime.errors.InputError: --min-votes: 2 exceeds the 1 voter(s) here (axial)
    """
    voters = list(dict.fromkeys(planes))
    if min_votes is not None and vote in COUNTING_VOTES and min_votes > len(voters):
        raise InputError(
            "--min-votes", f"{min_votes} exceeds the {len(voters)} voter(s) here ({', '.join(voters)})"
        )


def default_min_votes(views: int) -> int:
    """Half the views, rounded up: 2 of 3, 3 of 6, 1 of 1 or 2."""
    return max(1, -(-views // 2))


def calibrate(prob: np.ndarray, threshold: float) -> np.ndarray:
    """``prob`` mapped piecewise linearly so that ``threshold`` becomes 0.5 (0 and 1 stay).

    >>> calibrate(np.array([0.0, 0.125, 0.25, 0.625, 1.0]), 0.25).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"a per-view threshold must lie in (0, 1), got {threshold}")
    low = prob * np.float32(0.5 / threshold)
    high = np.float32(0.5) + (prob - np.float32(threshold)) * np.float32(0.5 / (1.0 - threshold))
    return np.where(prob <= threshold, low, high).astype(np.float32)


def on_common_scale(
    views: Sequence[np.ndarray], threshold: float | Sequence[float]
) -> tuple[list[np.ndarray], float]:
    """The views as float32 on one scale, and the level above which they mark a voxel.

    One threshold per view maps each with :func:`calibrate` (its own threshold lands on 0.5);
    one value, or equal values, keep the views as they are.
    """
    views = [np.asarray(view, dtype=np.float32) for view in views]
    if not np.isscalar(threshold):
        if len(threshold) != len(views):
            raise ValueError(f"{len(threshold)} thresholds for {len(views)} views")
        if len(set(threshold)) > 1:  # one operating point for all needs no calibration
            views = [calibrate(view, t) for view, t in zip(views, threshold, strict=True)]
    return views, operating_level(threshold)


def merge_planes(views: Sequence[np.ndarray], planes: Sequence[str]) -> list[np.ndarray]:
    """One view per orientation: the voxel-wise maximum of the views of that orientation.

    Orientations keep the order in which they first appear.

    >>> a, b = np.array([0.2, 0.9]), np.array([0.6, 0.1])
    >>> [v.tolist() for v in merge_planes([a, b, a], ["axial", "axial", "coronal"])]
    [[0.6, 0.9], [0.2, 0.9]]
    """
    if len(planes) != len(views):
        raise ValueError(f"{len(planes)} orientations for {len(views)} views")
    merged: dict[str, np.ndarray] = {}
    for view, plane in zip(views, planes, strict=True):
        merged[plane] = view if plane not in merged else np.maximum(merged[plane], view)
    return list(merged.values())


def lesion_votes(candidates: np.ndarray, n_candidates: int, binaries: Sequence[np.ndarray]) -> np.ndarray:
    """Which view detects which candidate: boolean array (n_views, n_candidates + 1).

    Column 0 (background) is always False.
    """
    detected = np.zeros((len(binaries), n_candidates + 1), dtype=bool)
    for row, binary in zip(detected, binaries, strict=True):
        row[np.unique(candidates[binary])] = True
    detected[:, 0] = False
    return detected


def _survivors(detected: np.ndarray, volumetric: np.ndarray, min_votes: int, rule: VolumeRule) -> np.ndarray:
    """Which candidates (columns of ``detected``) pass the vote; ``volumetric`` marks the 3D voters."""
    votes = detected.sum(axis=0)
    if rule == "voter" or not volumetric.any():
        return votes >= min_votes
    seen_in_3d = detected[volumetric].any(axis=0)
    return (votes > min_votes) | ((votes == min_votes) & seen_in_3d)


def _triplanar(
    views: Sequence[np.ndarray],
    binaries: Sequence[np.ndarray],
    min_votes: int,
    threshold: float,
    volumetric: np.ndarray,
    volume_rule: VolumeRule,
    keep: Keep,
) -> tuple[np.ndarray, np.ndarray]:
    union = np.logical_or.reduce(binaries)
    candidates, n_candidates = cc3d.connected_components(union, connectivity=6, return_N=True)
    detected = lesion_votes(candidates, n_candidates, binaries)
    survives = _survivors(detected, volumetric, min_votes, volume_rule)
    outside = candidates == 0
    total = np.zeros(candidates.shape, np.float32)
    count = np.zeros(candidates.shape, np.float32)
    peak = np.zeros(candidates.shape, np.float32)
    for view, row in zip(views, detected, strict=True):
        weight = row[candidates]  # the view counts inside the candidates it detected
        total += np.where(weight, view, 0)
        count += weight
        peak = np.maximum(peak, np.where(weight, view, 0))
    mean = np.where(outside, np.mean(views, axis=0), total / np.maximum(count, 1)).astype(np.float32)
    if keep == "mean":
        return _largest_piece_per_candidate(survives[candidates] & (mean > threshold), candidates), mean
    # Every voxel of a candidate is marked by a view that detects it: the union is the whole candidate.
    return survives[candidates], np.where(outside, mean, peak).astype(np.float32)


def _largest_piece_per_candidate(mask: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``mask`` (inside the candidates) with only the largest 6-connected piece of each candidate."""
    pieces, n_pieces = cc3d.connected_components(mask, connectivity=6, return_N=True)
    if n_pieces == 0:
        return mask
    sizes = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    owner = np.zeros(n_pieces + 1, np.int64)
    owner[pieces[mask]] = candidates[mask]  # a connected piece lies in exactly one candidate
    by_owner_then_size = np.lexsort((sizes[1:], owner[1:])) + 1
    owners = owner[by_owner_then_size]
    largest = by_owner_then_size[np.append(owners[1:] != owners[:-1], True)]
    keep = np.zeros(n_pieces + 1, dtype=bool)
    keep[largest] = True
    return keep[pieces]


def fuse_views(
    views: Sequence[np.ndarray],
    vote: Vote = "triplanar",
    min_votes: int | None = None,
    threshold: float | Sequence[float] = 0.5,
    min_size_mm3: float = MIN_LESION_MM3,
    spacing_mm: float = 1.0,
    planes: Sequence[str] | None = None,
    volume_rule: VolumeRule = "voter",
    keep: Keep = "union",
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse probability volumes (values in [0, 1], one shape) into a mask and a probability.

    Args:
        views: one volume per (prediction folder, orientation), on the export grid.
        vote: ``none``, ``mean``, ``majority`` or ``triplanar`` (see the module docstring).
        min_votes: views that must agree (majority, triplanar), counted after merging the
            planes; capped at the number of views; None: :func:`default_min_votes`.
        threshold: a view marks a voxel when its probability is strictly above this; one value
            per view puts each view on the common scale first (see :func:`calibrate`).
        min_size_mm3: lesions of this volume or less are dropped (0: keep all).
        spacing_mm: isotropic voxel size of the export grid.
        planes: the orientation of each view; views of one orientation are merged first
            (:func:`merge_planes`); :data:`VOLUME` marks 3D views. None: every view is a plane
            of its own.
        volume_rule: how a 3D view counts in ``triplanar``: ``voter`` or ``tiebreak``.
        keep: which voxels a ``triplanar`` survivor keeps: ``union`` or ``mean``.

    Returns:
        ``(mask, prob)``: uint8 binary mask and float32 fused probability, on the views' grid.
    """
    if not views:
        raise ValueError("no view to fuse")
    for name, value, allowed in (("vote mode", vote, VOTE_MODES), ("volume rule", volume_rule, VOLUME_RULES)):
        if value not in allowed:
            raise ValueError(f"unknown {name} '{value}' (choose from {', '.join(allowed)})")
    if keep not in KEEP_RULES:
        raise ValueError(f"unknown keep rule '{keep}' (choose from {', '.join(KEEP_RULES)})")
    views, threshold = on_common_scale(views, threshold)
    volumetric = np.zeros(len(views), bool)
    if planes is not None:
        views = merge_planes(views, planes)
        volumetric = np.array([plane == VOLUME for plane in dict.fromkeys(planes)])
    min_votes = default_min_votes(len(views)) if min_votes is None else min_votes
    if min_votes > len(views) and vote in ("majority", "triplanar"):
        warnings.warn(f"--min-votes {min_votes} > {len(views)} views; using {len(views)}", stacklevel=2)
    votes_needed = max(1, min(min_votes, len(views)))
    binaries = [view > threshold for view in views]
    if vote == "none":
        prob = np.max(views, axis=0)
        mask = prob > threshold
    elif vote == "mean":
        prob = np.mean(views, axis=0)
        mask = prob > threshold
    elif vote == "majority":
        prob = np.mean(views, axis=0)
        mask = np.sum(binaries, axis=0) >= votes_needed
    else:
        mask, prob = _triplanar(views, binaries, votes_needed, threshold, volumetric, volume_rule, keep)
    if min_size_mm3 > 0:
        mask = remove_small_lesions(mask, (spacing_mm,) * 3, min_size_mm3)
    return mask.astype(np.uint8), prob.astype(np.float32)
