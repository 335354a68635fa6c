"""UNeXt model, stems, losses and augmentation: shapes, sizes and maths on small tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unext_long.data import Augment, IntensityJitter
from unext_long.losses import bce_dice_loss, focal_tversky_loss, soft_dice
from unext_long.model import create_model, unext, unext_s

GROUPS = {"t1": [0, 1, 2], "t0": [3, 4, 5], "diff": [6, 7, 8]}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_paper() -> None:
    assert abs(n_params(unext(in_channels=3)) - 1.47e6) / 1.47e6 < 0.01
    assert abs(n_params(unext_s(in_channels=3)) - 0.25e6) / 0.25e6 < 0.03


@pytest.mark.parametrize("stem", ["early", "siamese"])
def test_both_stems_take_the_default_nine_channel_recipe(stem: str) -> None:
    torch.manual_seed(0)
    model = create_model("unext-s", in_channels=9, stem=stem, channel_groups=GROUPS).eval()
    out = model(torch.rand(2, 9, 64, 96))
    assert out.shape == (2, 1, 64, 96)
    assert torch.isfinite(out).all()


def test_in_channels_is_honoured() -> None:
    model = unext_s(in_channels=5, num_classes=2).eval()
    assert model.stem.conv.in_channels == 5
    assert model(torch.rand(1, 5, 32, 32)).shape == (1, 2, 32, 32)


@pytest.mark.parametrize(
    ("size", "pad_mode"), [((37, 51), "reflect"), ((7, 5), "reflect"), ((45, 33), "constant")]
)
def test_odd_sizes_are_padded_and_cropped_back(size: tuple[int, int], pad_mode: str) -> None:
    model = unext_s(in_channels=9, stem="siamese", channel_groups=GROUPS, pad_mode=pad_mode).eval()
    assert model(torch.rand(1, 9, *size)).shape == (1, 1, *size)


def test_siamese_stem_shares_the_first_stage_and_needs_both_time_points() -> None:
    model = unext_s(in_channels=9, stem="siamese", channel_groups=GROUPS).eval()
    x = torch.rand(1, 9, 32, 32)
    swapped = x[:, [3, 4, 5, 0, 1, 2, 6, 7, 8]]
    # Same weights on both time points: swapping t0 and t1 swaps f0 and f1 exactly.
    f0, f1 = (model.stem.shared(x[:, GROUPS[g]]) for g in ("t0", "t1"))
    g0, g1 = (model.stem.shared(swapped[:, GROUPS[g]]) for g in ("t0", "t1"))
    assert torch.allclose(f0, g1) and torch.allclose(f1, g0)
    with pytest.raises(ValueError, match="t0 and t1"):
        unext_s(in_channels=9, stem="siamese", channel_groups={"t1": [0, 1, 2]})
    with pytest.raises(ValueError, match="same length"):
        unext_s(in_channels=9, stem="siamese", channel_groups={"t1": [0, 1], "t0": [3, 4, 5]})


def test_dice_is_pooled_over_the_batch_so_empty_slices_do_not_dominate() -> None:
    target = torch.zeros(2, 1, 4, 4)
    target[0, 0, :2, :2] = 1
    prob = target.clone()
    prob[1, 0, 0, 0] = 1  # one false-positive pixel on the empty slice
    # Pooled: 2*4 / (5 + 4) (with one pixel of smoothing); a per-slice mean would give about 0.75.
    assert float(soft_dice(prob, target)) == pytest.approx(9 / 10)
    valid = torch.ones_like(target)
    valid[1] = 0  # padding is ignored
    assert float(soft_dice(prob, target, valid)) == pytest.approx(1.0)


def test_losses_are_low_for_a_confident_correct_prediction_and_high_otherwise() -> None:
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:5, 2:5] = 0.5  # soft multi-rater mask
    target[..., 3, 3] = 1.0
    binary = (target > 0.4).float()
    good, bad = binary * 40 - 20, 20 - binary * 40
    for loss in (bce_dice_loss, focal_tversky_loss):
        assert float(loss(good, binary)) < 0.05
        assert float(loss(bad, binary)) > 0.5
    assert torch.isfinite(bce_dice_loss(good, target))


def test_intensity_jitter_is_drawn_per_time_point_and_leaves_diff_alone() -> None:
    jitter = IntensityJitter(GROUPS, p=1.0)
    params = jitter.draw(np.random.default_rng(1))
    assert set(params) == {"t1", "t0"}
    assert params["t1"] != params["t0"]
    image = np.random.default_rng(0).random((16, 16, 9)).astype(np.float32)
    out = jitter.apply(image, params)
    assert np.array_equal(out[..., 6:], image[..., 6:])
    assert not np.allclose(out[..., :3], image[..., :3])
    assert np.array_equal(out, jitter.apply(image, params))  # deterministic given the draw


def test_augment_crops_to_imgsz_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((50, 70, 9)).astype(np.float32)
    mask = np.zeros((50, 70), np.float32)
    mask[20:25, 30:36] = 1.0
    augment = Augment(32, GROUPS, seed=3)
    first = augment(image, mask)
    augment.reseed(3)
    second = augment(image, mask)
    assert first[0].shape == (32, 32, 9) and first[1].shape == (32, 32)
    assert first[1].sum() > 0  # the crop keeps the lesion
    assert first[0].min() >= 0.0 and first[0].max() <= 1.0
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
