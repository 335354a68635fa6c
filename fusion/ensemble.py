"""Several models fused by what each showed on validation: the ``lead`` rule.

``triplanar`` treats every member alike: the models of a plane merge by their maximum
(calibrated) probability, so a weak member's false components and wider outlines enter the
vote as fully as the strong member's, and adding a model can make the mask worse
(docs/fusion.md: measured). ``lead`` gives each member a role from its validation record
(:mod:`fusion.record`: lesion F1, sensitivity, precision and Dice of the member's own vote on
the export's validation cases):

- the **leader**, the member with the best mean of validation lesion F1 and Dice (it proposes
  lesions and draws their outlines: both count), does so by its own vote over its planes (2 of 3
  by default; a 3D model's own mask);
- a **trusted** member *confirms* a candidate of the leader that fewer of the leader's planes
  saw than its vote needs (one plane is enough then), and *proposes* the lesions of its own vote
  that overlap nothing the leader kept, with its own outlines. A member is trusted when its
  validation lesion precision is at least the leader's and, fused in that role on the validation
  cases, it raises the leader's mean of lesion F1 and Dice there (:func:`fusion.record.proven_roles`):
  precise where the leader also finds lesions is not enough, what it adds where the leader is
  silent must be right too;
- every other member has no say: a member less precise than the leader adds more false lesions
  than true ones where the leader is silent, and its outlines are not the best.

With one member, ``lead`` is that member's ``triplanar`` vote, voxel for voxel; a member that
proves as good as the leader on validation adds what it alone finds.

>>> import numpy as np
>>> lesion = np.zeros((8, 8, 8), np.float32); lesion[2:4, 2:4, 2:4] = 0.9
>>> weak = lesion.copy(); weak[6, 6, 6] = 1.0; weak[1:5, 1:5, 1:5] = np.maximum(weak[1:5, 1:5, 1:5], 0.6)
>>> views, planes = [lesion] * 3 + [weak] * 3, ["axial", "coronal", "sagittal"] * 2
>>> mask, _ = fuse_lead(views, planes, [0, 0, 0, 1, 1, 1], Roles(leader=0), min_size_mm3=0)
>>> int(mask.sum())                                   # the leader's lesion and outline only
8
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cc3d
import numpy as np

from fusion.voting import (
    VOTE_MODES,
    default_min_votes,
    fuse_views,
    lesion_votes,
    merge_planes,
    on_common_scale,
)
from runtime.lesions import MIN_LESION_MM3, remove_small_lesions

__all__ = ["LEAD", "FUSION_RULES", "Roles", "fuse_lead", "member_scores"]

LEAD = "lead"
FUSION_RULES: tuple[str, ...] = (LEAD, *VOTE_MODES)


def member_scores(record: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The scores of a member's own vote in its validation record (None without a usable one)."""
    scores = (record or {}).get("views", {}).get("triplanar") or {}
    values = {key: scores.get(key) for key in ("f1", "dice", "precision", "sensitivity")}
    if values["f1"] is None:  # no validation case with new lesions
        return None
    return {key: math.nan if value is None else float(value) for key, value in values.items()}


@dataclass(frozen=True)
class Roles:
    """Which member (index into the ensemble) leads, and which others are trusted.

    :meth:`from_records` trusts every member as precise as the leader; :func:`fusion.record.proven_roles`
    keeps those whose role proves useful on the validation cases.
    """

    leader: int
    trusted: tuple[int, ...] = ()

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any] | None]) -> Roles | None:
        """The roles the members' validation records give; None when a member has no record
        (one member needs none: it leads)."""
        if len(records) == 1:
            return cls(0)
        scores = [member_scores(record) for record in records]
        if any(s is None for s in scores):
            return None

        def rank(i: int) -> tuple[float, float, int]:
            # The leader both finds lesions and draws them: lesion F1 and Dice weigh alike, as in
            # the MSSEG-2 ranking; F1 breaks ties, then the order of the members.
            f1, dice = scores[i]["f1"], scores[i]["dice"]
            return (f1 + dice) / 2 if math.isfinite(dice) else f1 / 2, f1, -i

        leader = max(range(len(scores)), key=rank)
        bar = scores[leader]["precision"]
        trusted = [i for i in range(len(scores)) if i != leader and scores[i]["precision"] >= bar > 0]
        return cls(leader, tuple(sorted(trusted, key=rank, reverse=True)))


def _own_vote(
    views: Sequence[np.ndarray], planes: Sequence[str], level: float, min_votes: int | None, spacing_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    mask, prob = fuse_views(views, "triplanar", min_votes, level, 0, spacing_mm, planes)
    return mask.astype(bool), prob


def fuse_lead(
    views: Sequence[np.ndarray],
    planes: Sequence[str],
    members: Sequence[int],
    roles: Roles,
    min_votes: int | None = None,
    threshold: float | Sequence[float] = 0.5,
    min_size_mm3: float = MIN_LESION_MM3,
    spacing_mm: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse the views of several members by their ``roles`` (see the module docstring).

    Args:
        views, planes, threshold, min_size_mm3, spacing_mm: as :func:`fusion.voting.fuse_views`.
        members: the member (0, 1, ...) each view belongs to.
        min_votes: planes of one member that must detect a lesion (default: half, rounded up).

    Returns ``(mask, prob)`` as :func:`fusion.voting.fuse_views`.
    """
    if len(members) != len(views) or len(planes) != len(views):
        raise ValueError(f"{len(views)} views, {len(planes)} orientations and {len(members)} members")
    views, level = on_common_scale(views, threshold)
    of = {m: [i for i, owner in enumerate(members) if owner == m] for m in dict.fromkeys(members)}

    def member_views(m: int) -> tuple[list[np.ndarray], list[str]]:
        return [views[i] for i in of[m]], [planes[i] for i in of[m]]

    mask, prob = _own_vote(*member_views(roles.leader), level, min_votes, spacing_mm)
    own = {m: _own_vote(*member_views(m), level, min_votes, spacing_mm) for m in roles.trusted}
    lead_planes = merge_planes(*member_views(roles.leader))
    candidates, n = cc3d.connected_components(
        np.logical_or.reduce([view > level for view in lead_planes]), connectivity=6, return_N=True
    )
    if own and n:
        votes = lesion_votes(candidates, n, [view > level for view in lead_planes]).sum(axis=0)
        needed = max(1, min(min_votes or default_min_votes(len(lead_planes)), len(lead_planes)))
        confirmed = np.logical_or.reduce([lesion_votes(candidates, n, [m])[0] for m, _ in own.values()])
        rescued = (confirmed & (votes < needed))[candidates]
        mask = mask | rescued
        prob = np.where(rescued, np.max(lead_planes, axis=0), prob)
    for member_mask, member_prob in own.values():
        lesions = cc3d.connected_components(member_mask, connectivity=6)
        proposed = member_mask & ~np.isin(lesions, np.unique(lesions[mask]))
        mask = mask | proposed
        prob = np.where(proposed, member_prob, prob)
    if min_size_mm3 > 0:
        mask = remove_small_lesions(mask, (spacing_mm,) * 3, min_size_mm3)
    return mask.astype(np.uint8), prob.astype(np.float32)
