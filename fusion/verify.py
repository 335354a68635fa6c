"""Candidates verified one by one: a sensitive proposal, then a per-lesion decision.

The subtraction baseline at its default threshold is precise and blind; lowered, it finds more
new lesions among many false ones (registration residuals, CSF whose suppression differs between
sessions, partial volume of thick slices). Here it proposes at a low z (the verifier's
``candidate_z``; :data:`CANDIDATE_Z` by default), each candidate cut to its own outline, and a
classifier scores each from what a reader weighs (:data:`FEATURES`): its size, how much and how
far above the brain it brightens, how bright it already was at baseline, how deep in the brain
it lies, its shape, and how much dark tissue (CSF) borders it.

The classifier is gradient-boosted trees, monotone in the features whose direction is known
(:data:`MONOTONE`: a stronger brightening or a brighter follow-up never makes a candidate less of a
new lesion, a brighter baseline never more), so that a lesion brighter than any it trained on is
not rejected for it. It is trained by :mod:`fusion.verify_train` (``mslong train-verifier``) on real pairs with
transplanted lesions (docs/verifier.md).
The score is painted on the candidate's voxels, so that the fusion (threshold, dropping old
lesions, mapping back to the scan) treats it as any model's probability.

>>> import numpy as np
>>> from slicer.geometry import CaseGeometry
>>> rng = np.random.default_rng(0)
>>> t0n = rng.normal(0.5, 0.02, (48, 48, 48)).astype(np.float32); t1n = t0n.copy()
>>> t1n[20:25, 20:25, 20:25] += 0.3
>>> roi = np.zeros(t0n.shape, bool); roi[4:44, 4:44, 4:44] = True
>>> found = find_candidates(t1n, t0n, roi, spacing=1.0)
>>> found.count, found.features.shape, int(found.labels.max())
(1, (1, 11), 1)
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cc3d
import numpy as np
from scipy import ndimage

from fusion.baseline import baseline_blobs, brightening_maps
from runtime.errors import InputError
from runtime.files import atomic_path
from runtime.lesions import remove_small_lesions
from slicer.normalise import robust_zscore

__all__ = [
    "CANDIDATE_Z",
    "FEATURES",
    "MONOTONE",
    "Candidates",
    "Verifier",
    "find_candidates",
    "load_verifier",
    "verify",
]

CANDIDATE_Z = 2.5  # far under the baseline's 8: the proposal trades precision for sensitivity
CANDIDATE_MIN_MM3 = 3.0  # the challenge's smallest lesion
OUTLINE = 0.5  # a candidate is its voxels of at least this share of its peak brightening
DEPTH_CAP_MM = 20.0  # deeper than this is all "deep white matter" to the features
SHELL_VOXELS = 2  # the border whose dark share is a feature
DARK_Z = -1.5  # brightness of CSF-like voxels in the border (robust standard deviations)
FEATURES = (
    "log_volume_mm3",
    "max_z",
    "mean_z",
    "mean_brightness_t1",
    "max_brightness_t1",
    "mean_brightness_t0",
    "depth_mm",
    "extent_min_mm",
    "extent_mid_mm",
    "extent_max_mm",
    "dark_border_share",
)
# +1: the score never falls as the feature grows; -1: never rises; 0: free.
MONOTONE = {"max_z": 1, "mean_z": 1, "mean_brightness_t1": 1, "max_brightness_t1": 1,
            "mean_brightness_t0": -1, "dark_border_share": -1}  # fmt: skip


@dataclass
class Candidates:
    """The candidates of one case on the export grid.

    Attributes:
        labels: int32 volume, candidate ``i + 1`` at row ``i`` of ``features``.
        features: float32 (count, len(FEATURES)).
    """

    labels: np.ndarray
    features: np.ndarray

    @property
    def count(self) -> int:
        return len(self.features)


def find_candidates(
    t1n: np.ndarray, t0n: np.ndarray, roi: np.ndarray, spacing: float, z_threshold: float = CANDIDATE_Z
) -> Candidates:
    """The baseline's blobs at ``z_threshold`` and what the verifier reads of each."""
    roi = roi.astype(bool)
    z, brightness = brightening_maps(t1n, t0n, spacing, roi)
    labels, count = _outlined(
        baseline_blobs(z, brightness, roi, spacing, z_threshold, CANDIDATE_MIN_MM3, 1.0), z, spacing
    )
    before = robust_zscore(t0n, roi)
    return Candidates(labels, _features(labels, count, z, brightness, before, roi, spacing))


def _outlined(blobs: np.ndarray, z: np.ndarray, spacing: float) -> tuple[np.ndarray, int]:
    """Each blob cut to its voxels of at least :data:`OUTLINE` of its peak z, relabelled.

    At a low threshold neighbouring brightenings merge into one sprawling blob; a lesion's own
    outline is where its brightening is a good part of its peak (a half maximum, as a full width
    at half maximum measures a peak), which parts merged blobs and keeps a lesion's size.
    """
    blobs = cc3d.connected_components(np.ascontiguousarray(blobs > 0), connectivity=26)
    peaks = np.zeros(int(blobs.max()) + 1, np.float32)
    np.maximum.at(peaks, blobs.ravel(), z.ravel())
    outline = (blobs > 0) & (z >= OUTLINE * peaks[blobs])
    kept = remove_small_lesions(outline, (spacing,) * 3, CANDIDATE_MIN_MM3)
    labels = cc3d.connected_components(np.ascontiguousarray(kept), connectivity=26).astype(np.int32)
    return labels, int(labels.max())


def _features(labels: np.ndarray, count: int, z: np.ndarray, brightness: np.ndarray, before: np.ndarray,
              roi: np.ndarray, spacing: float) -> np.ndarray:  # fmt: skip
    if count == 0:
        return np.zeros((0, len(FEATURES)), np.float32)
    index = np.arange(1, count + 1)
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=count + 1)[1:].astype(float)

    def mean(volume: np.ndarray) -> np.ndarray:
        return np.bincount(flat, weights=volume.ravel(), minlength=count + 1)[1:] / sizes

    depth = ndimage.distance_transform_edt(roi) * spacing
    boxes = ndimage.find_objects(labels)
    extents = np.sort([[(s.stop - s.start) * spacing for s in box] for box in boxes], axis=1)
    shell = ndimage.grey_dilation(labels, size=(2 * SHELL_VOXELS + 1,) * 3)
    border = (labels == 0) & (shell > 0)
    border_sizes = np.bincount(shell[border], minlength=count + 1)[1:]
    dark = np.bincount(shell[border & (brightness < DARK_Z)], minlength=count + 1)[1:]
    return np.column_stack(
        [
            np.log(sizes * spacing**3),
            ndimage.maximum(z, labels, index),
            mean(z),
            mean(brightness),
            ndimage.maximum(brightness, labels, index),
            mean(before),
            np.minimum(ndimage.maximum(depth, labels, index), DEPTH_CAP_MM),
            extents,
            dark / np.maximum(border_sizes, 1),
        ]
    ).astype(np.float32)


@dataclass
class Verifier:
    """A trained verifier: boosted trees over :data:`FEATURES`, how they were trained (export
    spacing, candidate threshold) and their operating point (chosen on held-out pairs).

    The trees are stored as plain arrays (per node: feature, threshold, children, leaf value),
    so that a shipped verifier loads with NumPy alone, whatever scikit-learn trained it.
    """

    nodes: np.ndarray  # (trees, nodes) of NODE_FIELDS, leaves padded to the longest tree
    bias: float
    spacing: float
    candidate_z: float
    threshold: float
    record: dict[str, Any]

    def score(self, features: np.ndarray) -> np.ndarray:
        """Probability per candidate (rows of ``features``)."""
        logit = np.full(len(features), self.bias)
        rows = np.arange(len(features))
        for tree in self.nodes:
            node = np.zeros(len(features), np.int64)
            for _ in range(tree["depth"].max() + 1):
                here = tree[node]
                right = features[rows, here["feature"]] > here["threshold"]
                step = np.where(right, here["right"], here["left"])
                node = np.where(here["leaf"], node, step)
            logit += tree["value"][node]
        return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, nodes=self.nodes, bias=self.bias, spacing=self.spacing, candidate_z=self.candidate_z,
                     threshold=self.threshold, record=json.dumps(self.record), features=np.array(FEATURES))  # fmt: skip


NODE_FIELDS = np.dtype(
    [("feature", np.int64), ("threshold", np.float64), ("left", np.int64), ("right", np.int64),
     ("leaf", bool), ("value", np.float64), ("depth", np.int64)]
)  # fmt: skip


def load_verifier(path: str | Path) -> Verifier:
    """A trained verifier from its file (``mslong train-verifier``)."""
    source = Path(path)
    if not source.is_file():
        raise InputError(source, "no such verifier file")
    try:
        with np.load(source, allow_pickle=False) as data:
            if tuple(data["features"].tolist()) != FEATURES:
                raise ValueError("made for other candidate features")
            return Verifier(data["nodes"].astype(NODE_FIELDS), float(data["bias"]), float(data["spacing"]),
                            float(data["candidate_z"]), float(data["threshold"]), json.loads(str(data["record"])))  # fmt: skip
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(source, f"not a lesion verifier: {str(error).splitlines()[0]}") from None


def verify(
    t1n: np.ndarray, t0n: np.ndarray, roi: np.ndarray, spacing: float, verifier: Verifier
) -> np.ndarray:
    """Export-grid probability volume: each candidate's verifier score on its voxels, 0 elsewhere."""
    candidates = find_candidates(t1n, t0n, roi, spacing, verifier.candidate_z)
    scores = np.concatenate([[0.0], verifier.score(candidates.features)]).astype(np.float32)
    return scores[candidates.labels]
