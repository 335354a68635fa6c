"""MSSEG-2 metrics on constructed cases whose answers are counted by hand.

The parity tests follow animaSegPerfAnalyzer's rules (``animaSegPerfCAnalyzer.cxx``): each
expected value is worked out from that source, in the comment beside it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fusion.metrics import Lesions, dice, lesion_detection, min_lesion_voxels, score_case

ONE_MM = (1.0, 1.0, 1.0)


def _line(length: int, rows: int = 2) -> np.ndarray:
    return np.zeros((length, rows, 1), np.uint8)


def test_one_prediction_spanning_four_reference_lesions() -> None:
    gt, pred = np.zeros((50, 8, 8), np.uint8), np.zeros((50, 8, 8), np.uint8)
    for start in (1, 13, 25, 37):
        gt[start : start + 10, 1:7, 1:7] = 1  # four 10x6x6 lesions, two voxels apart
    pred[1:47, 1:7, 1:7] = 1  # one 46x6x6 component over all of them
    # beta uses the prediction's voxels in the reference's background: the three gaps,
    # 216 of 1656 (13%), not the 1296 outside each lesion (78%)
    assert lesion_detection(gt, pred, ONE_MM) == (4, 4)
    assert lesion_detection(pred, gt, ONE_MM) == (1, 1)  # precision: the four lesions lie inside it
    assert score_case(gt, pred, ONE_MM)["f1"] == 1.0


@pytest.mark.parametrize(("covered", "found"), [(10, 0), (11, 1)])
def test_alpha_more_than_ten_percent(covered: int, found: int) -> None:
    gt, pred = _line(100), _line(100)
    gt[:, 0] = 1  # one lesion of 100 voxels
    pred[:covered, 0] = 1  # fully inside: beta and gamma pass, only alpha decides
    assert lesion_detection(gt, pred, ONE_MM) == (found, 1)


def test_alpha_counts_lesions_only_small_components_are_background() -> None:
    gt, pred = _line(100), _line(100)
    gt[:, 0] = 1
    pred[:10, 0] = 1  # 10 voxels: exactly 10%, not more
    pred[20:23, 0] = 1  # 3 mm³: not a lesion, so not coverage either
    assert lesion_detection(gt, pred, ONE_MM) == (0, 1)


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
    # covered = inside + 20; A alone must reach 65% of it: 38/58 = 0.655, 37/57 = 0.649
    assert lesion_detection(gt, pred, ONE_MM) == (found, 1)


def test_two_components_together_reach_gamma() -> None:
    gt, pred = _line(100), _line(100)
    gt[:60, 0] = 1
    pred[:30, 0] = 1
    pred[31:60, 0] = 1  # two components inside, each below 65% of the covered 59 voxels
    assert lesion_detection(gt, pred, ONE_MM) == (1, 1)


def test_largest_overlap_first_not_largest_component() -> None:
    gt, pred = np.zeros((120, 6, 1), np.uint8), np.zeros((120, 6, 1), np.uint8)
    gt[:90, 0] = 1
    pred[:70, 0] = 1  # A: 70 voxels, all inside
    pred[71:91, 0] = 1  # B: 19 inside, 1 outside ...
    pred[71:91, 1:6] = 1  # ... and 100 more outside: the larger component (label 1), 84% outside
    # A is examined first (70 of 89 covered = 0.79 >= gamma): B is never tested against beta
    assert lesion_detection(gt, pred, ONE_MM) == (1, 1)


def test_equal_overlaps_larger_component_first() -> None:
    gt, pred = np.zeros((70, 4, 1), np.uint8), np.zeros((70, 4, 1), np.uint8)
    gt[:63, 0] = 1
    pred[0:20, 0] = pred[21:41, 0] = 1  # two components of 20 voxels inside
    pred[42:62, 0:4] = 1  # 20 inside and 60 outside (75%): scanned last but the largest
    # Anima numbers lesions by size, so among equal overlaps of 20 the stray one comes first
    # and ends the count; in scan order the first two would reach 2/3 >= gamma without it
    assert lesion_detection(gt, pred, ONE_MM) == (0, 1)


def test_loop_stops_after_reference_lesions_plus_one_components() -> None:
    gt, pred = np.zeros((130, 5, 1), np.uint8), np.zeros((130, 5, 1), np.uint8)
    gt[:100, 0] = 1
    pred[0:30, 0] = 1  # A: overlap 30
    pred[31:59, 0] = 1  # B: 28
    pred[60:86, 0] = 1  # C: 26, and 78 voxels outside (75% > beta) ...
    pred[60:86, 1:4] = 1
    pred[87:100, 0] = 1  # D: 13; covered 97, A + B hold 0.60 < gamma
    # one reference lesion: Anima examines at most 2 components (A, B), never reaches C
    assert lesion_detection(gt, pred, ONE_MM) == (1, 1)
    gt[110:120, 4] = 1  # a second reference lesion, far away: the bound becomes 3, C ends it
    assert lesion_detection(gt, pred, ONE_MM) == (0, 2)


def test_precision_is_the_transposed_test() -> None:
    gt, pred = _line(60, 1), _line(60, 1)
    gt[0:12, 0] = 1  # R1: 12 voxels
    gt[13:50, 0] = 1  # R2: 37 voxels
    pred[0:21, 0] = 1  # one lesion: all of R1, the gap, 8 voxels of R2
    # sensitivity: 1 of 21 predicted voxels lies in the background; R1 100% covered, R2 22%
    # precision: R1 first (12 of 20 = 0.6 < gamma), then R2, 29 of 37 (78%) outside: a false positive
    scores = score_case(gt, pred, ONE_MM)
    assert (scores["detected"], scores["ref_lesions"]) == (2, 2)
    assert (scores["precision"], scores["fp_lesions"], scores["f1"]) == (0.0, 1, 0.0)


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
        # 3 / voxel volume = 6.999999999999999 here, so Anima keeps 7 voxels, though 7 x volume
        # rounds to exactly 3.0 (a "volume > 3" test would drop them)
        ((1, 1, 0.4285714285714286), 6, 0),
        ((1, 1, 0.4285714285714286), 7, 1),
    ],
)
def test_strictly_larger_than_three_cubic_mm_as_a_voxel_count(
    spacing: tuple, voxels: int, lesions: int
) -> None:
    gt = np.zeros((8, 3, 3), np.uint8)
    gt[:voxels, 1, 1] = 1
    assert score_case(gt, gt, spacing)["ref_lesions"] == lesions
    assert (voxels >= min_lesion_voxels(spacing)) == bool(lesions)


def test_lesions_numbered_by_size_largest_first() -> None:
    mask = np.zeros((20, 3, 3), np.uint8)
    mask[0:4, 1, 1] = 1  # scanned first, 4 voxels
    mask[6:14, 1, 1] = 1  # 8 voxels
    mask[16:18, 1, 1] = 1  # 2 voxels: not a lesion
    lesions = Lesions.of(mask, ONE_MM)
    assert lesions.n == 2 and lesions.sizes.tolist() == [0, 8, 4]
    assert lesions.labels[10, 1, 1] == 1 and lesions.labels[17, 1, 1] == 0
    np.testing.assert_allclose(lesions.centroids, [[9.5, 1, 1], [1.5, 1, 1]])


def test_empty_reference_scores_the_predicted_lesions() -> None:
    gt, pred = np.zeros((12, 12, 12), np.uint8), np.zeros((12, 12, 12), np.uint8)
    pred[1:3, 1:3, 1:3] = 1  # 8 voxels
    pred[6:9, 6:9, 6:9] = 1  # 27 voxels
    pred[11, 11, 11] = 1  # 1 voxel: not a lesion
    scores = score_case(gt, pred, (1.0, 1.0, 2.0))
    # the number and volume of the predicted lesions; PPVL = 0 of 2, SensL and F1 0/0
    assert scores["fp_lesions"] == scores["pred_lesions"] == 2
    assert scores["fp_volume_mm3"] == (8 + 27) * 2.0
    assert scores["precision"] == 0.0
    assert all(math.isnan(scores[k]) for k in ("dice", "f1", "sensitivity"))


def test_no_predicted_lesion() -> None:
    gt = np.zeros((12, 12, 12), np.uint8)
    gt[2:5, 2:5, 2:5] = 1
    pred = np.zeros_like(gt)
    pred[8, 8, 8:11] = 1  # 3 mm³: no predicted lesion
    scores = score_case(gt, pred, ONE_MM)
    # Anima (since 58cfe530): PPVL 0 for a null tested segmentation; SensL = 0 of 1; F1 0
    assert scores["precision"] == 0.0 and scores["sensitivity"] == 0.0
    assert scores["f1"] == 0.0 and scores["fp_lesions"] == 0
    assert scores["dice"] == pytest.approx(0.0)


def test_both_empty_is_undefined() -> None:
    empty = np.zeros((6, 6, 6), np.uint8)
    scores = score_case(empty, empty, ONE_MM)
    assert all(math.isnan(scores[k]) for k in ("dice", "f1", "sensitivity"))
    assert scores["precision"] == 0.0  # a null prediction, as Anima scores it
    assert (scores["fp_lesions"], scores["fp_volume_mm3"]) == (0, 0.0)


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


def test_detection_by_size_counts_each_bin():
    from fusion.metrics import detection_by_size

    reference = np.zeros((30, 30, 30), np.uint8)
    reference[2:4, 2:4, 2:4] = 1  # 8 mm³
    reference[10:14, 10:14, 10:14] = 1  # 64 mm³
    reference[20:27, 20:27, 20:27] = 1  # 343 mm³
    prediction = np.zeros_like(reference)
    prediction[10:14, 10:14, 10:14] = 1
    rows = detection_by_size(reference, prediction, (1.0, 1.0, 1.0))
    assert [(r["size_mm3"], r["lesions"], r["detected"]) for r in rows] == [
        ("< 10", 1, 0),
        ("10-50", 0, 0),
        ("50-200", 1, 1),
        ("> 200", 1, 0),
    ]
