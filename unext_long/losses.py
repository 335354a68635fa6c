"""Segmentation losses pooled over the whole batch.

Dice and Tversky indices are computed over every pixel of the batch at once, not per slice and
then averaged: most slices hold no new lesion, and a per-slice Dice of an empty slice is either
undefined or dominated by its false positives.

Focal-Tversky: Abraham & Khan, "A novel focal Tversky loss function with improved attention
U-Net for lesion segmentation", ISBI 2019.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from unext_long.options import LOSS_NAMES

__all__ = ["LOSSES", "bce_dice_loss", "focal_tversky_loss", "soft_dice", "build_loss"]

EPS = 1.0  # smoothing in pixels: keeps Dice defined (and gradients tame) on empty batches

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _weights(target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(target) if valid is None else valid


def soft_dice(prob: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Dice of probabilities (or binary predictions) and soft targets, pooled over the batch.

    >>> t = torch.tensor([[[[0.0, 1.0]]]])
    >>> round(float(soft_dice(t, t)), 3)
    1.0
    """
    w = _weights(target, valid)
    intersection = (prob * target * w).sum()
    return (2 * intersection + EPS) / ((prob * w).sum() + (target * w).sum() + EPS)


def bce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy (mean over real pixels) + (1 - batch Dice).

    Args:
        logits: ``(B, 1, H, W)`` raw outputs.
        target: ``(B, 1, H, W)`` in [0, 1] (soft multi-rater masks allowed).
        valid: ``(B, 1, H, W)`` 1 on real pixels, 0 on padding (``None``: all real).
    """
    w = _weights(target, valid)
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * w).sum() / w.sum().clamp(
        min=1
    )
    return bce + 1 - soft_dice(torch.sigmoid(logits), target, valid)


def focal_tversky_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    alpha: float = 0.7,
    beta: float = 0.3,
    gamma: float = 0.75,
) -> torch.Tensor:
    """``(1 - TI) ** gamma`` with the Tversky index ``TP / (TP + alpha FN + beta FP)`` over the batch.

    ``alpha > beta`` weighs missed lesion pixels more than false alarms (small lesions).
    """
    w = _weights(target, valid)
    prob = torch.sigmoid(logits)
    tp = (prob * target * w).sum()
    fn = ((1 - prob) * target * w).sum()
    fp = (prob * (1 - target) * w).sum()
    tversky = (tp + EPS) / (tp + alpha * fn + beta * fp + EPS)
    return (1 - tversky).clamp(min=0) ** gamma


LOSSES: dict[str, LossFn] = dict(zip(LOSS_NAMES, (bce_dice_loss, focal_tversky_loss), strict=True))


def build_loss(name: str) -> LossFn:
    """The loss called ``name`` (``bce-dice`` or ``focal-tversky``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    return LOSSES[name]
