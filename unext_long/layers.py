"""Building blocks of UNeXt: convolutional stages and the tokenised shifted-MLP block.

Re-implemented from Valanarasu & Patel, "UNeXt: MLP-based Rapid Medical Image Segmentation
Network", MICCAI 2022, and the design of its reference code (jeya-maria-jose/UNeXt-pytorch,
MIT licence). Token tensors are ``(B, N, C)`` with ``N = H * W``; every block that needs the
grid takes ``(H, W)`` explicitly.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

with warnings.catch_warnings():
    # Importing timm runs torch.jit.interface (deprecated since torch 2.14): its FutureWarning
    # would precede every command line's output, one-line errors included.
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
    from timm.layers import DropPath, to_2tuple, trunc_normal_

__all__ = [
    "ConvStage",
    "UpStage",
    "DWConv",
    "ShiftedMLP",
    "ShiftedBlock",
    "OverlapPatchEmbed",
    "tokens_to_map",
    "map_to_tokens",
    "trunc_normal_",
]


def tokens_to_map(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, H*W, C)`` tokens -> ``(B, C, H, W)`` feature map."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *size)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` feature map -> ``(B, H*W, C)`` tokens."""
    return x.flatten(2).transpose(1, 2)


class ConvStage(nn.Module):
    """Encoder stage: conv3x3 -> norm -> max-pool(2) -> activation (the reference's order).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        norm_layer: 2D norm constructor taking the channel count.
        act_layer: activation constructor.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = norm_layer(out_channels)
        self.pool = nn.MaxPool2d(2)
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pool(self.norm(self.conv(x))))


class UpStage(nn.Module):
    """Decoder stage: conv3x3 -> norm -> bilinear upsample(2) -> activation.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        norm_layer: 2D norm constructor, or ``None`` for no norm (the last stage of the reference).
        act_layer: activation constructor.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm_layer: type[nn.Module] | None = nn.BatchNorm2d,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = norm_layer(out_channels) if norm_layer is not None else nn.Identity()
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return self.act(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))


class DWConv(nn.Module):
    """Depthwise 3x3 convolution on tokens: the positional encoding of the MLP stages."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return map_to_tokens(self.conv(tokens_to_map(x, size)))


def shift_tokens(x: torch.Tensor, size: tuple[int, int], shift_size: int, dim: int) -> torch.Tensor:
    """Shift channel groups of a token map by -s..+s pixels along ``dim`` (2: height, 3: width).

    The channels are split as ``torch.chunk`` splits them into ``shift_size`` groups; group ``i``
    moves by ``i - shift_size // 2`` pixels and zeros come in, which is what the reference's
    pad-roll-crop computes, without its copies.
    """
    fmap = tokens_to_map(x, size)
    out = torch.zeros_like(fmap)
    channels, length, pad = fmap.shape[1], fmap.shape[dim], shift_size // 2
    step = -(-channels // shift_size)  # chunk width of torch.chunk
    for i, shift in enumerate(range(-pad, pad + 1)):
        group = slice(i * step, min((i + 1) * step, channels))
        if group.start >= channels or abs(shift) >= length:
            continue
        src = slice(max(-shift, 0), length - max(shift, 0))
        dst = slice(max(shift, 0), length - max(-shift, 0))
        if dim == 2:
            out[:, group, dst] = fmap[:, group, src]
        else:
            out[:, group, :, dst] = fmap[:, group, :, src]
    return map_to_tokens(out)


class ShiftedMLP(nn.Module):
    """Shift along H -> fc -> DWConv -> act -> shift along W -> fc (the tokenised MLP of UNeXt).

    Args:
        in_features: token width.
        hidden_features: hidden width (defaults to ``in_features``; UNeXt uses an MLP ratio of 1).
        act_layer: activation constructor.
        drop: dropout after each fc.
        shift_size: number of channel groups (shifts -shift_size//2 .. +shift_size//2).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        drop: float = 0.0,
        shift_size: int = 5,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        self.shift_size = shift_size
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.dwconv = DWConv(hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.fc1(shift_tokens(x, size, self.shift_size, dim=2))
        x = self.drop(self.act(self.dwconv(x, size)))
        x = self.fc2(shift_tokens(x, size, self.shift_size, dim=3))
        return self.drop(x)


class ShiftedBlock(nn.Module):
    """Pre-norm residual block around :class:`ShiftedMLP`: ``x + drop_path(mlp(norm(x)))``.

    Args:
        dim: token width.
        mlp_ratio: hidden width / ``dim``.
        drop: dropout inside the MLP.
        drop_path: stochastic-depth rate.
        act_layer: activation constructor.
        norm_layer: token norm constructor.
    """

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 1.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.norm = norm_layer(dim)
        self.mlp = ShiftedMLP(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return x + self.drop_path(self.mlp(self.norm(x), size))


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding: strided conv, then tokens and a norm.

    Args:
        in_channels: input channels.
        embed_dim: token width.
        patch_size: conv kernel size.
        stride: conv stride (2 halves the grid).
        norm_layer: token norm constructor.
    """

    def __init__(
        self,
        in_channels: int,
        embed_dim: int,
        patch_size: int = 3,
        stride: int = 2,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        kernel = to_2tuple(patch_size)
        self.proj = nn.Conv2d(
            in_channels, embed_dim, kernel, stride=stride, padding=(kernel[0] // 2, kernel[1] // 2)
        )
        self.norm = norm_layer(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        size = (x.shape[2], x.shape[3])
        return self.norm(map_to_tokens(x)), size
