"""Several models fused by what each showed on validation: the ``lead`` rule.

``triplanar`` treats every model alike: the models of a plane merge by their maximum
(calibrated) probability, so a weaker model's false components and wider outlines enter the
vote as fully as the stronger model's, and adding a model can make the mask worse
(docs/results.md: measured). ``lead`` lets the model with the best **validation record**
(:mod:`fusion.record`: the model's own vote on the export's validation cases, scored by the
MSSEG-2 rules) fuse alone, by its own vote over its planes (2 of 3 by default; a 3D model's own
mask): the best mean of lesion F1 and Dice, since the mask both finds lesions and outlines
them, as the MSSEG-2 ranking weighs them; F1 breaks ties, then the order of the models.

Roles for the other models were built and measured first: confirming the leader's lesions seen
on one plane, adding their own where the leader was silent, trusted when as precise as the
leader on validation, then also only when that role raised the validation score. On the
phantom's test patients they never helped and, once, cost 0.08 lesion F1 (a model precise
where the leader also found lesions, wrong where it added its own); six validation patients do
not tell that apart (docs/results.md, "Several models").

>>> record = lambda f1, dice: {"views": {"triplanar": {"f1": f1, "dice": dice}}}
>>> leader_of([record(0.67, 0.55), record(0.65, 0.71)])   # a little less F1, far better outlines
1
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fusion.voting import VOTE_MODES

__all__ = ["LEAD", "FUSION_RULES", "member_scores", "leader_of", "leader_views"]

LEAD = "lead"
FUSION_RULES: tuple[str, ...] = (LEAD, *VOTE_MODES)


def member_scores(record: Mapping[str, Any] | None) -> dict[str, float] | None:
    """Lesion F1 and Dice of a model's own vote in its validation record (None without a usable one)."""
    scores = (record or {}).get("views", {}).get("triplanar") or {}
    if scores.get("f1") is None:  # no validation case with new lesions
        return None
    return {key: math.nan if scores.get(key) is None else float(scores[key]) for key in ("f1", "dice")}


def leader_of(records: Sequence[Mapping[str, Any] | None]) -> int | None:
    """The model (index) whose validation record is best; None when one has no record (a model
    alone needs none: it leads)."""
    if len(records) == 1:
        return 0
    scores = [member_scores(record) for record in records]
    if any(s is None for s in scores):
        return None

    def rank(i: int) -> tuple[float, float, int]:
        f1, dice = scores[i]["f1"], scores[i]["dice"]
        return (f1 + dice) / 2 if math.isfinite(dice) else f1 / 2, f1, -i

    return max(range(len(scores)), key=rank)


def leader_views(
    views: Sequence[np.ndarray], planes: Sequence[str], members: Sequence[int], leader: int
) -> tuple[list[np.ndarray], list[str]]:
    """The leader's views and planes among all models' (``members``: each view's model)."""
    if not len(members) == len(views) == len(planes):
        raise ValueError(f"{len(views)} views, {len(planes)} orientations and {len(members)} models")
    kept = [i for i, member in enumerate(members) if member == leader]
    if not kept:
        raise ValueError(f"model {leader} has no view")
    return [views[i] for i in kept], [planes[i] for i in kept]
