"""Two-timepoint layers that ultralytics' model parser builds from our model YAMLs.

* :class:`ChannelGroups` (row 0 of every yolo_long model) reorders the input channels to
  ``[t0..., t1..., other groups...]`` from the dataset's ``mslong.channel_groups`` and
  checks their number, so the stems find each time point whatever the export recipe.
* :class:`SiameseStem` encodes t0 and t1 with one shared convolution and joins
  ``[f0, f1, f1 - f0, f_other]`` (``f_other``: the remaining channels, e.g. the exported
  intensity difference, through a convolution of their own), fused by a 1x1 convolution.

The grouped stem needs no module of its own: it is ultralytics' ``Conv`` with
``groups = number of channel groups``.

Importing this module registers both classes with ``ultralytics.nn.tasks`` (its parser
looks layer names up in that module's globals) and switches ultralytics offline
(:mod:`yolo_long.offline`). Unpickling a yolo_long checkpoint imports it, so the plain
``yolo`` command line works on our checkpoints.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import torch
from torch import nn
from ultralytics.nn import tasks
from ultralytics.nn.modules import Conv

from yolo_long import offline

__all__ = ["ChannelGroups", "SiameseStem", "register"]


class ChannelGroups(nn.Module):
    """Reorder the input channels (a fixed permutation) and check their number.

    Args:
        order: input channel index for each output channel, a permutation of ``range(C)``.

    >>> ChannelGroups([3, 4, 5, 0, 1, 2])(torch.arange(6.0).view(1, 6, 1, 1)).flatten().tolist()
    [3.0, 4.0, 5.0, 0.0, 1.0, 2.0]
    """

    def __init__(self, order: list[int]) -> None:
        super().__init__()
        if sorted(order) != list(range(len(order))):
            raise ValueError(f"channel order {order} is not a permutation of 0..{len(order) - 1}")
        self.order = list(order)
        self.is_identity = self.order == sorted(self.order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != len(self.order):
            raise ValueError(f"model expects {len(self.order)} input channels, got {x.shape[1]}")
        return x if self.is_identity else x[:, self.order]


class SiameseStem(nn.Module):
    """Shared-weight stem for two time points plus the remaining channels.

    Input channels: ``[t0 (time_channels), t1 (time_channels), other (other_channels)]``.

    Args:
        out_channels: channels of the output (as the ``Conv`` the stem replaces).
        kernel: kernel size of the time-point and other-channel convolutions.
        stride: their stride.
        time_channels: channels per time point (2 * context + 1 in the export).
        other_channels: remaining channels (e.g. the diff group), 0 for none.

    >>> stem = SiameseStem(16, 3, 2, time_channels=3, other_channels=3)
    >>> stem(torch.zeros(1, 9, 64, 64)).shape
    torch.Size([1, 16, 32, 32])
    """

    def __init__(
        self,
        out_channels: int,
        kernel: int = 3,
        stride: int = 2,
        time_channels: int = 3,
        other_channels: int = 0,
    ) -> None:
        super().__init__()
        width = max(out_channels // 2, 8)
        self.time_channels = time_channels
        self.encode = Conv(time_channels, width, kernel, stride)  # shared by t0 and t1
        self.other = Conv(other_channels, width, kernel, stride) if other_channels else None
        parts = 4 if other_channels else 3
        self.fuse = Conv(parts * width, out_channels, 1, 1)

    @staticmethod
    def declared_channels(args: list[Any]) -> int:
        """Output channels of the layer built from a YAML row's ``args`` (what the parser must know)."""
        return int(args[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.time_channels
        f0, f1 = self.encode(x[:, :n]), self.encode(x[:, n : 2 * n])
        parts = [f0, f1, f1 - f0]
        if self.other is not None:
            parts.append(self.other(x[:, 2 * n :]))
        return self.fuse(torch.cat(parts, 1))


# Layers whose output channel count the parser cannot infer (it assumes "same as input" for
# layers it does not know).
_DECLARING = {"SiameseStem": SiameseStem}
_original_parse_model = tasks.parse_model


def _parse_model(d: dict, ch: int, verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
    """``tasks.parse_model`` that also builds :data:`_DECLARING` layers with the right channel count.

    Each such row is first parsed as ultralytics' ``Index`` layer, whose output channels the
    parser takes from ``args[0]`` as given, then replaced by the real layer.
    """
    rows = d["backbone"] + d["head"]
    custom = {i: row for i, row in enumerate(rows) if row[2] in _DECLARING}
    if not custom:
        return _original_parse_model(d, ch, verbose=verbose)
    d = deepcopy(d)
    n_backbone = len(d["backbone"])
    for i, (f, n, name, args) in custom.items():
        section, j = (d["backbone"], i) if i < n_backbone else (d["head"], i - n_backbone)
        section[j] = [f, n, "Index", [_DECLARING[name].declared_channels(args)]]
    model, save = _original_parse_model(d, ch, verbose=verbose)
    for i, (f, _, name, args) in custom.items():
        layer = _DECLARING[name](*args)
        layer.i, layer.f, layer.type = i, f, f"{__name__}.{name}"
        layer.np = sum(p.numel() for p in layer.parameters())
        model[i] = layer
    return model, save


def register() -> None:
    """Make our layers buildable by ultralytics' parser (idempotent)."""
    tasks.ChannelGroups = ChannelGroups
    tasks.SiameseStem = SiameseStem
    tasks.parse_model = _parse_model


offline.apply()
register()
