"""Training the lesion verifier of :mod:`fusion.verify` on real pairs with transplanted lesions.

Each training pair gives, per draw (:func:`drawn_cases`):

- *forward*: its follow-up with real lesions transplanted (:mod:`simulation.transplant`), labelled
  with the pair's own new lesions and the inserted ones;
- *reversed*: the pair in reverse time (the follow-up becomes the baseline), transplants in the
  new follow-up; the pair's own new lesions now vanish, so they are real negatives, as is every
  difference two sessions make.

Every draw is prepared exactly as ``mslong segment`` prepares a pair (:func:`slicer.prepare.prepare_case`),
the candidate stage runs on it and each candidate is labelled by whether it touches a labelled
lesion (:func:`case_examples`). Examples are cached per drawn case, so that a second model over
the same pairs (one per left-out pair, then one over all of them) costs the trees only.
The operating point is the threshold with the best lesion F1 on examples of held-out draws.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from fusion.verify import CANDIDATE_Z, FEATURES, MONOTONE, NODE_FIELDS, Candidates, Verifier, find_candidates
from runtime.files import atomic_path
from runtime.lesions import label_lesions
from simulation.transplant import Donor, cut_donors, transplant
from slicer.brain import compute_brain_mask
from slicer.datasets import Case
from slicer.export import case_seed
from slicer.io import load_mask, load_volume, spacing_of
from slicer.prepare import PreparedCase, prepare_case

__all__ = ["Pair", "Examples", "read_pair", "donors_of", "drawn_cases", "case_examples", "pair_examples",
           "choose_candidate_z", "train_verifier", "TrainingPlan", "train_from_datasets", "describe"]  # fmt: skip

TRANSPLANTS = 20  # lesions placed per drawn case
CANDIDATE_GRID = (4.0, 3.0, 2.5, 2.0)  # candidate thresholds searched on a held-out draw
THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.05), 2)  # the operating points searched on held-out draws
TREES = 200
TREE_DEPTH = 3  # interactions of three features at most: a few thousand candidates train them
LEARNING_RATE = 0.05


@dataclass
class Pair:
    """A real longitudinal pair in memory: scans on one grid, its brain and its new lesions."""

    name: str
    t0: np.ndarray
    t1: np.ndarray
    image: nib.Nifti1Image
    brain: np.ndarray
    reference: np.ndarray


@dataclass
class Examples:
    """Candidates of several drawn cases with their targets.

    Attributes:
        target: 1 where the candidate touches a labelled lesion.
        case, matched: the drawn case of each candidate, and the lesion it touches (0: none).
        lesions: labelled lesions per drawn case (the candidates may miss some).
    """

    features: np.ndarray
    target: np.ndarray
    case: np.ndarray
    matched: np.ndarray
    lesions: np.ndarray
    names: list[str] = field(default_factory=list)

    @classmethod
    def join(cls, parts: Sequence[Examples]) -> Examples:
        offsets = np.cumsum([0] + [len(part.lesions) for part in parts])
        return cls(
            np.concatenate([p.features for p in parts]),
            np.concatenate([p.target for p in parts]),
            np.concatenate([p.case + offset for p, offset in zip(parts, offsets, strict=False)]),
            np.concatenate([p.matched for p in parts]),
            np.concatenate([p.lesions for p in parts]),
            [name for part in parts for name in part.names],
        )

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, features=self.features, target=self.target, case=self.case,
                                matched=self.matched, lesions=self.lesions, names=np.array(self.names))  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> Examples:
        data = np.load(path)
        return cls(data["features"], data["target"], data["case"], data["matched"], data["lesions"],
                   data["names"].tolist())  # fmt: skip


def read_pair(case: Case, device: str = "cpu") -> Pair:
    """A dataset case with t0 and a consensus; its brain mask, or deepbet's on the follow-up."""
    t1, image = load_volume(case.t1)
    t0, _ = load_volume(case.t0)
    reference = load_mask(case.consensus)[0]
    if case.brain_mask is not None:
        brain = load_mask(case.brain_mask)[0] > 0
    else:
        brain = compute_brain_mask(t1, image.affine, device)
    return Pair(case.id, t0, t1, image, brain, reference)


def donors_of(cases: Sequence[Case]) -> list[Donor]:
    """The lesions of each case's follow-up and consensus (new lesions, for a longitudinal case)."""
    donors = []
    for case in cases:
        scan, image = load_volume(case.t1)
        donors += cut_donors(scan, load_mask(case.consensus)[0], spacing_of(image.affine), case.id)
    return donors


def drawn_cases(pair: Pair, donors: Sequence[Donor], draws: Sequence[int], seed: int,
                count: int = TRANSPLANTS) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:  # fmt: skip
    """``(name, follow-up, baseline, label)`` of each draw, forward then reversed."""
    spacing = spacing_of(pair.image.affine)
    for draw in draws:
        for direction, (follow, base, own) in {
            "forward": (pair.t1, pair.t0, pair.reference),
            "reversed": (pair.t0, pair.t1, np.zeros_like(pair.reference)),
        }.items():
            name = f"{pair.name}_{direction}_d{draw}"
            moved, inserted, _, _ = transplant(follow, base, pair.brain, spacing, donors, count,
                                               case_seed(seed, name), lesions=pair.reference)  # fmt: skip
            yield name, moved, base, ((own > 0) | (inserted > 0)).astype(np.uint8)


def case_examples(
    name: str,
    t1: np.ndarray,
    t0: np.ndarray,
    image: nib.Nifti1Image,
    brain: np.ndarray,
    label: np.ndarray,
    spacing: float,
    candidate_z: float = CANDIDATE_Z,
) -> Examples:
    """One drawn case prepared as ``mslong segment`` prepares a pair, its candidates labelled."""
    return labelled_candidates(name, _prepared(t1, t0, image, brain, label, spacing), spacing, candidate_z)


def _prepared(t1: np.ndarray, t0: np.ndarray, image: nib.Nifti1Image, brain: np.ndarray, label: np.ndarray,
              spacing: float) -> PreparedCase:  # fmt: skip
    return prepare_case(t1, image, t0, image, label, brain=brain, spacing=spacing, register="none")


def labelled_candidates(name: str, prepared: PreparedCase, spacing: float, candidate_z: float) -> Examples:
    """The candidates of one prepared case, each a positive when it touches a labelled lesion."""
    candidates: Candidates = find_candidates(prepared.normalised["t1n"], prepared.normalised["t0n"],
                                             prepared.roi, spacing, candidate_z)  # fmt: skip
    lesions, count = label_lesions(prepared.mask, (spacing,) * 3)
    touched = np.zeros(candidates.count + 1, np.int64)
    inside = (candidates.labels > 0) & (lesions > 0)
    # A candidate touching several lesions is matched to one of them: it counts once either way.
    touched[candidates.labels[inside]] = lesions[inside]
    matched = touched[1:]
    return Examples(candidates.features, (matched > 0).astype(np.float32),
                    np.zeros(candidates.count, np.int64), matched, np.array([count]), [name])  # fmt: skip


def pair_examples(pair: Pair, donors: Sequence[Donor], draws: Sequence[int], seed: int, spacing: float,
                  cache: Path | None = None, candidate_z: float = CANDIDATE_Z) -> Examples:  # fmt: skip
    """Examples of every drawn case of one pair, read from ``cache`` where there (keyed by pair,
    draw, direction, seed, spacing and candidate threshold) and written there otherwise."""
    parts = []
    for name, t1, t0, label in _cached_or_drawn(pair, donors, draws, seed, spacing, cache, candidate_z):
        if t1 is None:
            parts.append(Examples.load(name))
            continue
        examples = case_examples(name, t1, t0, pair.image, pair.brain, label, spacing, candidate_z)
        if cache is not None:
            examples.save(cache / f"{name}{_key(donors, seed, spacing, candidate_z)}.npz")
        parts.append(examples)
    return Examples.join(parts)


def _cached_or_drawn(pair: Pair, donors: Sequence[Donor], draws: Sequence[int], seed: int, spacing: float,
                     cache: Path | None, candidate_z: float) -> Iterator[tuple]:  # fmt: skip
    missing = []
    for draw in draws:
        key = _key(donors, seed, spacing, candidate_z)
        files = (
            [cache / f"{pair.name}_{d}_d{draw}{key}.npz" for d in ("forward", "reversed")] if cache else []
        )
        if files and all(path.is_file() for path in files):
            yield from ((path, None, None, None) for path in files)
        else:
            missing.append(draw)
    yield from drawn_cases(pair, donors, missing, seed)


def choose_candidate_z(pair: Pair, donors: Sequence[Donor], draw: int, seed: int, spacing: float,
                       grid: Sequence[float] = CANDIDATE_GRID) -> tuple[float, dict[float, float]]:  # fmt: skip
    """The candidate threshold of ``grid`` whose candidates touch the most labelled lesions of one
    held-out draw of ``pair`` (ties: the higher threshold, fewer candidates), and each one's recall."""
    cases = [(name, _prepared(t1, t0, pair.image, pair.brain, label, spacing))
             for name, t1, t0, label in drawn_cases(pair, donors, [draw], seed)]  # fmt: skip
    recall = {}
    for z in grid:
        examples = Examples.join(
            [labelled_candidates(name, prepared, spacing, z) for name, prepared in cases]
        )
        recall[z] = lesion_scores(examples, np.ones(len(examples.target), bool))[1]
    return max(grid, key=lambda z: (recall[z], z)), recall


def _key(donors: Sequence[Donor], seed: int, spacing: float, candidate_z: float) -> str:
    """What a cached drawn case depends on besides its pair and draw: the donors and settings."""
    sources = zlib.crc32(",".join(donor.source for donor in donors).encode())
    return f"_s{seed}_{spacing:g}mm_z{candidate_z:g}_donors{sources:08x}"


def lesion_scores(examples: Examples, accepted: np.ndarray) -> tuple[float, float, float]:
    """Lesion F1, sensitivity and precision of the accepted candidates, over every drawn case:
    a labelled lesion is found when an accepted candidate touches it."""
    found = {
        (int(c), int(m)) for c, m, a in zip(examples.case, examples.matched, accepted, strict=True) if a and m
    }
    total = int(examples.lesions.sum())
    sensitivity = len(found) / total if total else 0.0
    kept = int(accepted.sum())
    precision = float((accepted & (examples.matched > 0)).sum()) / kept if kept else 0.0
    f1 = 2 * sensitivity * precision / (sensitivity + precision) if sensitivity + precision else 0.0
    return f1, sensitivity, precision


def operating_point(scores: np.ndarray, examples: Examples) -> tuple[float, dict[str, float]]:
    """The threshold of :data:`THRESHOLDS` with the best lesion F1 (ties: the higher threshold)."""
    results = [lesion_scores(examples, scores > t) for t in THRESHOLDS]  # as the fusion thresholds
    best = max(range(len(THRESHOLDS)), key=lambda i: (results[i][0], i))
    f1, sensitivity, precision = results[best]
    candidate_recall = lesion_scores(examples, np.ones(len(scores), bool))[1]
    return float(THRESHOLDS[best]), {"f1": f1, "sensitivity": sensitivity, "precision": precision,
                                     "candidate_recall": candidate_recall}  # fmt: skip


def train_verifier(train: Examples, held_out: Examples, spacing: float, seed: int = 0,
                   candidate_z: float = CANDIDATE_Z, record: dict | None = None) -> Verifier:  # fmt: skip
    """Fit the boosted trees on ``train`` and choose their threshold on ``held_out``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    started = time.perf_counter()
    model = HistGradientBoostingClassifier(
        max_depth=TREE_DEPTH, max_iter=TREES, learning_rate=LEARNING_RATE, l2_regularization=1.0,
        monotonic_cst=[MONOTONE.get(name, 0) for name in FEATURES], early_stopping=False, random_state=seed,
    )  # fmt: skip
    model.fit(train.features, train.target.astype(int))
    verifier = Verifier(
        _nodes(model), float(np.ravel(model._baseline_prediction)[0]), spacing, candidate_z, 0.5, {}
    )
    threshold, held_out_scores = operating_point(verifier.score(held_out.features), held_out)
    verifier.threshold = threshold
    verifier.record = {
        **(record or {}),
        "trees": TREES,
        "tree_depth": TREE_DEPTH,
        "seed": seed,
        "train_seconds": round(time.perf_counter() - started, 1),
        "train_candidates": len(train.target),
        "train_positives": int(train.target.sum()),
        "train_cases": train.names,
        "held_out_cases": held_out.names,
        "train_at_threshold": _rounded(operating_point(verifier.score(train.features), train)[1]),
        "held_out_at_threshold": _rounded(held_out_scores),
    }
    return verifier


def _nodes(model: object) -> np.ndarray:
    """The fitted trees as :data:`fusion.verify.NODE_FIELDS` arrays (scikit-learn keeps them in
    its predictors' ``nodes``), padded to one length with leaves."""
    trees = [predictors[0].nodes for predictors in model._predictors]  # noqa: SLF001 - no public export
    nodes = np.zeros((len(trees), max(len(tree) for tree in trees)), NODE_FIELDS)
    nodes["leaf"] = True
    for row, tree in enumerate(trees):
        view = nodes[row, : len(tree)]
        view["feature"], view["threshold"] = tree["feature_idx"], tree["num_threshold"]
        view["left"], view["right"], view["leaf"] = tree["left"], tree["right"], tree["is_leaf"].astype(bool)
        view["value"], view["depth"] = tree["value"], tree["depth"]
    return nodes


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 4) for key, value in scores.items()}


def describe(verifier: Verifier) -> str:
    """The verifier's record as indented JSON (for logs and the model card)."""
    return json.dumps({"threshold": verifier.threshold, "spacing": verifier.spacing,
                       "candidate_z": verifier.candidate_z, **verifier.record}, indent=2)  # fmt: skip


@dataclass(frozen=True)
class TrainingPlan:
    """What :func:`train_from_datasets` trains on and how.

    Attributes:
        pairs: longitudinal cases (t0, t1, consensus of new lesions) that give tissue and lesions.
        donor_cases: single-time-point cases (scan, lesion consensus) that give lesions.
        draws: drawn cases per pair that train; ``held_out`` more choose the operating point.
    """

    pairs: tuple[Case, ...]
    donor_cases: tuple[Case, ...]
    out: Path
    spacing: float = 1.0
    draws: int = 8
    held_out: int = 2
    seed: int = 0
    cache: Path | None = None
    device: str = "cpu"


def train_from_datasets(plan: TrainingPlan) -> Verifier:
    """Train a verifier on transplants into ``plan.pairs`` and save it to ``plan.out``.

    Donors are every lesion of the donor cases and the pairs' own new lesions; the candidate
    threshold is chosen on one more held-out draw of each pair.
    """
    donors = donors_of(plan.donor_cases) + donors_of(plan.pairs)
    pairs = [read_pair(case, plan.device) for case in plan.pairs]
    tuning_draw = plan.draws + plan.held_out
    recalls = [choose_candidate_z(pair, donors, tuning_draw, plan.seed, plan.spacing)[1] for pair in pairs]
    pooled = {z: float(np.mean([recall[z] for recall in recalls])) for z in CANDIDATE_GRID}
    candidate_z = max(CANDIDATE_GRID, key=lambda z: (pooled[z], z))
    train, held_out = (
        Examples.join(
            [
                pair_examples(pair, donors, list(draws), plan.seed, plan.spacing, plan.cache, candidate_z)
                for pair in pairs
            ]
        )  # fmt: skip
        for draws in (range(plan.draws), range(plan.draws, tuning_draw))
    )
    record = {
        "pairs": [case.id for case in plan.pairs],
        "donor_cases": [case.id for case in plan.donor_cases],
        "donors": len(donors),
        "candidate_recall_by_z": {f"{z:g}": round(value, 4) for z, value in pooled.items()},
    }
    verifier = train_verifier(train, held_out, plan.spacing, plan.seed, candidate_z, record)
    verifier.save(plan.out)
    return verifier
