"""UNeXt: three conv stages, two tokenised shifted-MLP stages, a mirrored decoder with additive skips.

Re-implemented from Valanarasu & Patel, "UNeXt: MLP-based Rapid Medical Image Segmentation
Network", MICCAI 2022 (arXiv:2203.04967) and the design of the reference code
(github.com/jeya-maria-jose/UNeXt-pytorch, MIT licence). Differences from the reference: the
input channel count is honoured (the reference hard-codes 3), the first stage can be a
two-timepoint stem (:mod:`unext_long.stems`), and any input size works (padded to a multiple
of 32, output cropped back).

>>> model = unext_s(in_channels=9, stem="siamese",
...                 channel_groups={"t1": [0, 1, 2], "t0": [3, 4, 5], "diff": [6, 7, 8]})
>>> print(tuple(model(torch.zeros(1, 9, 100, 70)).shape))
(1, 1, 100, 70)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unext_long.layers import (
    ConvStage,
    OverlapPatchEmbed,
    ShiftedBlock,
    UpStage,
    map_to_tokens,
    tokens_to_map,
    trunc_normal_,
)
from unext_long.options import MODEL_SIZES
from unext_long.stems import build_stem

__all__ = ["UNeXt", "MODELS", "SIZE_MULTIPLE", "unext", "unext_s", "create_model"]

# Five halvings (three pooled conv stages, two strided patch embeddings).
SIZE_MULTIPLE = 32


class UNeXt(nn.Module):
    """UNeXt for binary or multi-class segmentation of 2D (multi-channel) slices.

    Args:
        in_channels: input channels.
        num_classes: output channels (logits).
        widths: conv stage widths (3) then token stage widths (2).
        stem: first stage, ``"early"`` or ``"siamese"`` (see :mod:`unext_long.stems`).
        channel_groups: ``{group: [channel indices]}`` for the siamese stem.
        mlp_ratio: hidden width / token width in the shifted MLPs.
        drop_rate: dropout inside the shifted MLPs.
        drop_path_rate: stochastic depth of the deepest token blocks.
        norm_layer: 2D norm of the conv stages.
        token_norm_layer: norm of the token stages.
        act_layer: activation of the conv stages.
        pad_mode: ``"reflect"`` or ``"constant"`` (zero) padding up to a multiple of 32;
            ``"reflect"`` falls back to ``"replicate"`` on inputs too small to reflect.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        widths: Sequence[int] = (16, 32, 128, 160, 256),
        stem: str = "early",
        channel_groups: Mapping[str, Sequence[int]] | None = None,
        mlp_ratio: float = 1.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        token_norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.ReLU,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"widths needs 5 values (3 conv, 2 token stages), got {list(widths)}")
        if pad_mode not in ("reflect", "constant"):
            raise ValueError(f"pad_mode must be 'reflect' or 'constant', got {pad_mode!r}")
        c1, c2, c3, e1, e2 = widths
        self.in_channels, self.num_classes, self.pad_mode = in_channels, num_classes, pad_mode
        dpr = torch.linspace(0, drop_path_rate, 2).tolist()

        def token_block(dim: int, drop_path: float) -> ShiftedBlock:
            return ShiftedBlock(dim, mlp_ratio, drop_rate, drop_path, norm_layer=token_norm_layer)

        self.stem = build_stem(stem, in_channels, c1, channel_groups, norm_layer, act_layer)
        self.encoder2 = ConvStage(c1, c2, norm_layer, act_layer)
        self.encoder3 = ConvStage(c2, c3, norm_layer, act_layer)
        self.patch_embed3 = OverlapPatchEmbed(c3, e1, norm_layer=token_norm_layer)
        self.block3 = token_block(e1, dpr[0])
        self.norm3 = token_norm_layer(e1)
        self.patch_embed4 = OverlapPatchEmbed(e1, e2, norm_layer=token_norm_layer)
        self.block4 = token_block(e2, dpr[1])
        self.norm4 = token_norm_layer(e2)

        self.decoder4 = UpStage(e2, e1, norm_layer, act_layer)
        self.dblock4 = token_block(e1, dpr[0])
        self.dnorm4 = token_norm_layer(e1)
        self.decoder3 = UpStage(e1, c3, norm_layer, act_layer)
        self.dblock3 = token_block(c3, dpr[1])
        self.dnorm3 = token_norm_layer(c3)
        self.decoder2 = UpStage(c3, c2, norm_layer, act_layer)
        self.decoder1 = UpStage(c2, c1, norm_layer, act_layer)
        self.decoder0 = UpStage(c1, c1, None, act_layer)
        self.head = nn.Conv2d(c1, num_classes, 1)
        self.apply(_init_weights)

    @staticmethod
    def _token_stage(
        x: torch.Tensor, block: ShiftedBlock, norm: nn.Module, embed: OverlapPatchEmbed | None = None
    ) -> torch.Tensor:
        # One shifted-MLP stage on a feature map (optionally embedded first), back to a map.
        if embed is None:
            tokens, size = map_to_tokens(x), (x.shape[2], x.shape[3])
        else:
            tokens, size = embed(x)
        return tokens_to_map(norm(block(tokens, size)), size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Full-resolution decoder features; H and W must be multiples of 32."""
        s1 = self.stem(x)
        s2 = self.encoder2(s1)
        s3 = self.encoder3(s2)
        s4 = self._token_stage(s3, self.block3, self.norm3, self.patch_embed3)
        out = self._token_stage(s4, self.block4, self.norm4, self.patch_embed4)
        out = self._token_stage(self.decoder4(out) + s4, self.dblock4, self.dnorm4)
        out = self._token_stage(self.decoder3(out) + s3, self.dblock3, self.dnorm3)
        out = self.decoder2(out) + s2
        out = self.decoder1(out) + s1
        return self.decoder0(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes, H, W)`` for any H, W (padded internally, cropped back)."""
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % SIZE_MULTIPLE, -width % SIZE_MULTIPLE
        if pad_h or pad_w:
            mode = self.pad_mode
            if mode == "reflect" and (pad_h >= height or pad_w >= width):
                mode = "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return self.head(self.forward_features(x))[..., :height, :width]


def _init_weights(module: nn.Module) -> None:
    # The reference's initialisation: truncated normal for linear layers, He (fan-out) for convs.
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def unext(**kwargs: object) -> UNeXt:
    """UNeXt as in the paper: widths 16/32/128/160/256, 1.47 M parameters at 3 channels.

    >>> round(sum(p.numel() for p in unext(in_channels=3).parameters()) / 1e6, 2)
    1.47
    """
    return UNeXt(widths=(16, 32, 128, 160, 256), **kwargs)  # type: ignore[arg-type]


def unext_s(**kwargs: object) -> UNeXt:
    """UNeXt-S: widths 8/16/32/64/128, about 0.25 M parameters.

    >>> round(sum(p.numel() for p in unext_s(in_channels=3).parameters()) / 1e6, 2)
    0.25
    """
    return UNeXt(widths=(8, 16, 32, 64, 128), **kwargs)  # type: ignore[arg-type]


MODELS: dict[str, Callable[..., UNeXt]] = dict(zip(MODEL_SIZES, (unext, unext_s), strict=True))


def create_model(name: str, **kwargs: object) -> UNeXt:
    """Build a model by its CLI name (``unext`` or ``unext-s``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
