"""MSSEG-2 metrics on constructed cases whose answers are counted by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fusion.metrics import dice, lesion_detection, score_case

ONE_MM = (1.0, 1.0, 1.0)


def _line(length: int, rows: int = 2) -> np.ndarray:
    return np.zeros((length, rows, 1), np.uint8)


@pytest.mark.parametrize(("covered", "found"), [(10, 0), (11, 1)])
def test_alpha_more_than_ten_percent(covered: int, found: int) -> None:
    gt, pred = _line(100), _line(100)
    gt[:, 0] = 1  # one lesion of 100 voxels
    pred[:covered, 0] = 1  # fully inside: only the coverage matters
    assert lesion_detection(gt, pred, ONE_MM) == (found, 1)


@pytest.mark.parametrize(("start", "found"), [(31, 1), (29, 0)])
def test_beta_seventy_percent_outside(start: int, found: int) -> None:
    gt, pred = _line(250), _line(250)
    gt[100:200, 0] = 1
    pred[start : start + 100, 0] = 1  # start 31: 69 voxels outside of 100; start 29: 71
    assert lesion_detection(gt, pred, ONE_MM) == (found, 1)


@pytest.mark.parametrize(("inside", "found"), [(38, 1), (37, 0)])
def test_gamma_sixty_five_percent_before_a_stray_component(inside: int, found: int) -> None:
    gt, pred = _line(100), _line(100)
    gt[:60, 0] = 1
    pred[:inside, 0] = 1  # component A, entirely inside the lesion
    pred[39:59, 0] = 1  # component B: 20 voxels inside ...
    pred[39:89, 1] = 1  # ... and 50 outside (71% > beta): it ends the count
    # covered = inside + 20; A alone must reach 65% of it: 38 >= 37.7, 37 < 37.05
    assert lesion_detection(gt, pred, ONE_MM) == (found, 1)


def test_two_components_together_reach_gamma() -> None:
    gt, pred = _line(100), _line(100)
    gt[:60, 0] = 1
    pred[:30, 0] = 1
    pred[31:60, 0] = 1  # two components inside, each below 65% of the covered 59 voxels
    assert lesion_detection(gt, pred, ONE_MM) == (1, 1)


def test_six_connectivity_edge_neighbours_are_two_lesions() -> None:
    gt = np.zeros((4, 4, 4), np.uint8)
    gt[1, 1, 1] = gt[2, 2, 1] = 1  # touch by an edge only
    scores = score_case(gt, gt, (2.0, 2.0, 2.0))  # 8 mm³ each: both count
    assert scores["ref_lesions"] == 2 and scores["f1"] == 1.0


@pytest.mark.parametrize(
    ("spacing", "voxels", "lesions"),
    [
        ((1, 1, 1), 3, 0),
        ((1, 1, 1), 4, 1),
        ((0.5, 0.5, 3), 4, 0),
        ((0.5, 0.5, 3), 5, 1),
        ((1, 1, 3), 1, 0),
        ((1, 1, 3), 2, 1),
    ],
)
def test_strictly_larger_than_three_cubic_mm(spacing: tuple, voxels: int, lesions: int) -> None:
    gt = np.zeros((8, 3, 3), np.uint8)
    gt[:voxels, 1, 1] = 1
    assert score_case(gt, gt, spacing)["ref_lesions"] == lesions


def test_empty_ground_truth_counts_false_positives() -> None:
    gt, pred = np.zeros((12, 12, 12), np.uint8), np.zeros((12, 12, 12), np.uint8)
    pred[1:3, 1:3, 1:3] = 1  # 8 voxels
    pred[6:9, 6:9, 6:9] = 1  # 27 voxels
    pred[11, 11, 11] = 1  # 1 voxel: not a lesion
    scores = score_case(gt, pred, (1.0, 1.0, 2.0))
    assert scores["fp_lesions"] == 3 - 1 and scores["fp_volume_mm3"] == (8 + 27) * 2.0
    assert all(math.isnan(scores[k]) for k in ("dice", "f1", "sensitivity"))
    assert scores["precision"] == 0.0


def test_empty_prediction() -> None:
    gt = np.zeros((12, 12, 12), np.uint8)
    gt[2:5, 2:5, 2:5] = 1
    scores = score_case(gt, np.zeros_like(gt), ONE_MM)
    assert scores["sensitivity"] == 0.0 and scores["f1"] == 0.0 and scores["dice"] == 0.0
    assert math.isnan(scores["precision"]) and scores["fp_lesions"] == 0


def test_lesion_precision_and_f1_by_hand() -> None:
    gt, pred = np.zeros((30, 30, 3), np.uint8), np.zeros((30, 30, 3), np.uint8)
    gt[1:4, 1:4, 1] = gt[10:13, 10:13, 1] = 1  # two lesions of 9 voxels
    pred[1:4, 1:4, 1] = 1  # finds the first
    pred[20:23, 20:23, 1] = pred[25:28, 25:28, 1] = 1  # and two false positives
    scores = score_case(gt, pred, ONE_MM)
    assert (scores["sensitivity"], scores["precision"]) == (0.5, 1 / 3)
    assert scores["f1"] == pytest.approx(2 * 0.5 / 3 / (0.5 + 1 / 3))
    assert scores["dice"] == pytest.approx(2 * 9 / (18 + 27)) and scores["fp_lesions"] == 2


def test_dice_of_two_empty_masks_is_undefined() -> None:
    assert math.isnan(dice(np.zeros(3), np.zeros(3)))
