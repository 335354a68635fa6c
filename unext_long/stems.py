"""Two-timepoint stems: the first encoder stage of UNeXt, fed with a baseline and a follow-up.

``early``
    every channel (t1, t0, diff, ...) goes into the first conv: the plain UNeXt stage.
``siamese``
    the first stage is shared between the t0 and t1 channel groups (same weights, so both
    scans are described in the same feature space); ``[f0, f1, f1 - f0]`` then meet in a
    1x1 conv back to the stage width. Every other channel (the ``diff`` group, or any extra
    source of the recipe) joins through its own stage, whose features enter the same 1x1
    fusion. Keeping extras out of the shared branch keeps its input a pure time point.

Which channels are t0 and t1 comes from the dataset YAML's ``mslong.channel_groups``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unext_long.layers import ConvStage
from unext_long.options import STEMS

__all__ = ["STEMS", "SiameseStem", "build_stem"]


class SiameseStem(nn.Module):
    """Shared first stage for t0 and t1, fused with their difference and the extra channels.

    Args:
        t0: channel indices of the baseline scan.
        t1: channel indices of the follow-up scan (same length as ``t0``, matching order).
        extra: indices of every other channel (may be empty).
        out_channels: stage width.
        norm_layer: 2D norm constructor.
        act_layer: activation constructor.

    >>> stem = SiameseStem([3, 4, 5], [0, 1, 2], [6, 7, 8], out_channels=16)
    >>> tuple(stem(torch.zeros(2, 9, 64, 64)).shape)
    (2, 16, 32, 32)
    """

    def __init__(
        self,
        t0: Sequence[int],
        t1: Sequence[int],
        extra: Sequence[int],
        out_channels: int,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        for name, indices in (("t0", t0), ("t1", t1), ("extra", extra)):
            self.register_buffer(
                f"{name}_index", torch.tensor(list(indices), dtype=torch.long), persistent=False
            )
        self.shared = ConvStage(len(t0), out_channels, norm_layer, act_layer)
        self.extra = ConvStage(len(extra), out_channels, norm_layer, act_layer) if extra else None
        branches = 4 if extra else 3
        self.fuse = nn.Sequential(
            nn.Conv2d(branches * out_channels, out_channels, 1, bias=False),
            norm_layer(out_channels),
            act_layer(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0 = self.shared(x.index_select(1, self.t0_index))
        f1 = self.shared(x.index_select(1, self.t1_index))
        parts = [f0, f1, f1 - f0]
        if self.extra is not None:
            parts.append(self.extra(x.index_select(1, self.extra_index)))
        return self.fuse(torch.cat(parts, dim=1))


def build_stem(
    kind: str,
    in_channels: int,
    out_channels: int,
    channel_groups: Mapping[str, Sequence[int]] | None = None,
    norm_layer: type[nn.Module] = nn.BatchNorm2d,
    act_layer: type[nn.Module] = nn.ReLU,
) -> nn.Module:
    """Build the first encoder stage (input -> ``out_channels`` at half resolution).

    Args:
        kind: ``"early"`` or ``"siamese"``.
        in_channels: channels of the input image.
        out_channels: width of the first stage.
        channel_groups: ``{group: [channel indices]}``; ``siamese`` needs ``t0`` and ``t1``.
        norm_layer: 2D norm constructor.
        act_layer: activation constructor.

    Raises:
        ValueError: unknown kind, or groups that do not fit ``in_channels``.
    """
    if kind == "early":
        return ConvStage(in_channels, out_channels, norm_layer, act_layer)
    if kind != "siamese":
        raise ValueError(f"unknown stem {kind!r}; expected one of {', '.join(STEMS)}")
    groups = dict(channel_groups or {})
    if "t0" not in groups or "t1" not in groups:
        raise ValueError(f"the siamese stem needs channel groups t0 and t1, got {sorted(groups)}")
    t0, t1 = list(groups["t0"]), list(groups["t1"])
    if len(t0) != len(t1) or not t0:
        raise ValueError(f"channel groups t0 {t0} and t1 {t1} must be non-empty and of the same length")
    used = set(t0) | set(t1)
    if not used <= set(range(in_channels)) or len(used) != 2 * len(t0):
        raise ValueError(f"channel groups t0 {t0} and t1 {t1} do not fit {in_channels} distinct channels")
    extra = [c for c in range(in_channels) if c not in used]
    return SiameseStem(t0, t1, extra, out_channels, norm_layer, act_layer)
