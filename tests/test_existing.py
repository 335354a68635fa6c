"""New, not old: fused lesions already hyperintense at baseline are dropped, new ones kept."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.existing import drop_existing_lesions

WHITE_MATTER, CORTEX, LESION = 0.45, 0.7, 1.0


def _ball(shape: tuple[int, int, int], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(shape) - np.asarray(centre)[:, None, None, None]
    return (grid**2).sum(0) <= radius**2


def _scans(seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Noisy normalised t0/t1 with an old lesion that brightens, one that enlarges, a new one
    in white matter and a new one against bright cortex."""
    rng = np.random.default_rng(seed)
    shape = (48, 48, 48)
    t0 = np.full(shape, WHITE_MATTER, np.float32)
    t0[:, :, 40:] = CORTEX
    t1 = t0.copy()
    lesions = {
        "brighter": _ball(shape, (10, 10, 10), 3),
        "enlarged": _ball(shape, (10, 30, 10), 4),
        "new": _ball(shape, (30, 30, 20), 3),
        "juxtacortical": _ball(shape, (30, 12, 37), 3) & (np.indices(shape)[2] < 40),
    }
    t0[lesions["brighter"]] = 0.75  # another scanner at baseline: the old lesion looks fainter
    t0[_ball(shape, (10, 30, 10), 3)] = LESION
    for lesion in lesions.values():
        t1[lesion] = LESION
    noisy = [v + rng.normal(0, 0.03, shape).astype(np.float32) for v in (t0, t1)]
    return np.clip(noisy[0], 0, 1), np.clip(noisy[1], 0, 1), lesions


def test_old_lesions_dropped_new_ones_kept() -> None:
    t0, t1, lesions = _scans(0)
    fused = np.logical_or.reduce(list(lesions.values()))  # a network that marks all four
    kept = drop_existing_lesions(fused, t0, t1, spacing=1.0)
    assert kept[lesions["new"]].all() and kept[lesions["juxtacortical"]].all()
    assert not kept[lesions["brighter"]].any() and not kept[lesions["enlarged"]].any()


def test_enlarging_rim_alone_stays() -> None:
    """Only the rim marked: its baseline was normal tissue, so the rule cannot call it old."""
    t0, t1, lesions = _scans(1)
    rim = lesions["enlarged"] & ~_ball(t0.shape, (10, 30, 10), 3)
    assert drop_existing_lesions(rim, t0, t1, spacing=1.0)[rim].mean() > 0.9


def test_any_common_intensity_scale() -> None:
    t0, t1, lesions = _scans(2)
    fused = np.logical_or.reduce(list(lesions.values()))
    as_uint8 = [np.rint(v * 255).astype(np.uint8) for v in (t0, t1)]
    np.testing.assert_array_equal(
        drop_existing_lesions(fused, t0, t1, 1.0), drop_existing_lesions(fused, *as_uint8, spacing=1.0)
    )


@pytest.mark.parametrize(("baseline", "dropped"), [(0.45, False), (0.52, False), (0.6, True), (1.0, True)])
def test_fraction_of_contrast_already_there(baseline: float, dropped: bool) -> None:
    """WM 0.45, lesion 1.0 at follow-up: dropped once more than a fifth (0.56) was there at t0."""
    t0 = np.full((30, 30, 30), WHITE_MATTER, np.float32)
    t1 = t0.copy()
    lesion = _ball(t0.shape, (15, 15, 15), 3)
    t0[lesion], t1[lesion] = baseline, LESION
    assert drop_existing_lesions(lesion, t0, t1, spacing=1.5).any() != dropped


def test_empty_mask_and_faint_candidates() -> None:
    zeros = np.zeros((9, 9, 9), np.float32)
    assert not drop_existing_lesions(zeros > 0, zeros, zeros, 1.0).any()
    candidate = np.zeros((9, 9, 9), bool)
    candidate[3:6, 3:6, 3:6] = True  # not brighter than its surroundings at follow-up: no verdict
    assert drop_existing_lesions(candidate, zeros, zeros, 1.0).sum() == 27


def test_fragment_beside_a_lesion_is_measured_against_tissue() -> None:
    """A one-voxel fragment inside a ring-shaped old lesion: its surroundings are the tissue around
    it, not the other lesion (whose brightness would leave it no contrast, hence no verdict)."""
    t0 = np.full((30, 30, 30), WHITE_MATTER, np.float32)
    t1 = t0.copy()
    old = _ball(t0.shape, (15, 15, 15), 7) & ~_ball(t0.shape, (15, 15, 15), 2)
    fragment = _ball(t0.shape, (15, 15, 15), 0)
    for lesion in (old, fragment):
        t0[lesion], t1[lesion] = 0.9, LESION
    assert not drop_existing_lesions(old | fragment, t0, t1, spacing=1.0).any()
