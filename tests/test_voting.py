"""Voting across views on constructed volumes: who survives, with how many votes."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.voting import VOTE_MODES, calibrate, default_min_votes, fuse_views, merge_planes

SHAPE = (20, 20, 20)


def _cube(corner: int, size: int = 3, value: float = 0.9) -> np.ndarray:
    view = np.zeros(SHAPE, np.float32)
    view[corner : corner + size, corner : corner + size, corner : corner + size] = value
    return view


def _views_with(lesion: np.ndarray, seen_by: int, n_views: int) -> list[np.ndarray]:
    """``n_views`` views of a common lesion; the first ``seen_by`` of them also see ``lesion``."""
    common = _cube(2)
    return [common + (lesion if i < seen_by else 0) for i in range(n_views)]


@pytest.mark.parametrize("vote", ["majority", "triplanar"])
def test_lesion_needs_min_votes(vote: str) -> None:
    extra = _cube(12)
    one = fuse_views(_views_with(extra, 1, 3), vote, min_votes=2)[0]
    two = fuse_views(_views_with(extra, 2, 3), vote, min_votes=2)[0]
    assert one[12:15, 12:15, 12:15].sum() == 0 and one[2:5, 2:5, 2:5].all()
    assert two[12:15, 12:15, 12:15].all() and two.sum() == 2 * 27


@pytest.mark.parametrize("vote", ["none", "mean"])
def test_union_and_mean(vote: str) -> None:
    mask = fuse_views(_views_with(_cube(12), 1, 3), vote)[0]
    # the union keeps what one view saw; the mean (0.9 / 3) does not
    assert bool(mask[12:15, 12:15, 12:15].all()) is (vote == "none")


def test_six_views_of_two_folders() -> None:
    extra = _cube(12)
    views = _views_with(extra, 2, 6)  # two views of six see the extra lesion
    assert fuse_views(views, "triplanar", min_votes=2)[0][13, 13, 13] == 1
    assert fuse_views(views, "triplanar", min_votes=3)[0][13, 13, 13] == 0


def test_triplanar_keeps_voxels_where_detecting_views_agree() -> None:
    strong = _cube(5, size=4, value=0.9)
    weak = _cube(5, size=4, value=0.9)
    weak[5:9, 5:9, 5] = 0.0  # one border plane only this view misses
    rim = np.zeros(SHAPE, np.float32)
    rim[5:9, 5:9, 4] = 0.8  # a rim one view sees, touching the lesion
    views = [strong + rim, weak, np.zeros(SHAPE, np.float32)]
    mask, prob = fuse_views(views, "triplanar", min_votes=2, keep="mean")
    # candidate = union (lesion + rim), detected by 2 of 3 views; fused prob = mean of those 2
    assert prob[6, 6, 4] == pytest.approx(0.4) and mask[6, 6, 4] == 0  # rim: (0.8 + 0) / 2
    assert prob[6, 6, 5] == pytest.approx(0.45) and mask[6, 6, 5] == 0  # (0.9 + 0) / 2
    assert mask[5:9, 5:9, 6:9].all() and mask.sum() == 4 * 4 * 3
    # keep="union" (the default): the whole candidate, at the maximum of its detecting views
    mask, prob = fuse_views(views, "triplanar", min_votes=2)
    assert prob[6, 6, 4] == pytest.approx(0.8) and mask[5:9, 5:9, 4:9].all() and mask.sum() == 4 * 4 * 5


def test_two_planes_one_voxel_apart_keep_their_lesion() -> None:
    """The mean of two views that mark neighbouring voxels is below the threshold at both."""
    first, second = np.zeros(SHAPE, np.float32), np.zeros(SHAPE, np.float32)
    first[5, 5, 5:7], second[5, 5, 7:9] = 0.9, 0.9  # one lesion, its two halves
    views = [first, second, np.zeros(SHAPE, np.float32)]
    union, _ = fuse_views(views, "triplanar", min_size_mm3=0)
    assert union.sum() == 4 and union[5, 5, 5:9].all()
    assert fuse_views(views, "triplanar", min_size_mm3=0, keep="mean")[0].sum() == 0


def test_triplanar_candidate_split_by_the_mean_stays_one_lesion() -> None:
    # a rim all three views see at both ends, and only one view in the middle
    ends = np.zeros(SHAPE, np.float32)
    ends[5:8, 5:8, 4:7] = 0.9  # 27 voxels
    ends[5:8, 5:8, 10:12] = 0.9  # 18 voxels
    middle = ends.copy()
    middle[5:8, 5:8, 7:10] = 0.9
    mask, _ = fuse_views([middle, ends, ends], "triplanar", min_votes=2, min_size_mm3=0, keep="mean")
    assert mask.sum() == 27 and mask[5:8, 5:8, 4:7].all()  # the larger end only
    # two separate candidates keep a lesion each
    mask, _ = fuse_views([ends, ends, ends], "triplanar", min_votes=2, min_size_mm3=0, keep="mean")
    assert mask.sum() == 45
    # the union keeps the candidate whole: one lesion, middle included
    mask, _ = fuse_views([middle, ends, ends], "triplanar", min_votes=2, min_size_mm3=0)
    assert mask.sum() == 72 and mask[5:8, 5:8, 4:12].all()


def test_lesion_in_other_view_does_not_vote_for_a_distant_one() -> None:
    a, b = _cube(2), _cube(12)
    mask = fuse_views([a, b, np.zeros(SHAPE, np.float32)], "triplanar", min_votes=2)[0]
    assert mask.sum() == 0


@pytest.mark.parametrize(("vote", "keep"), [(vote, "union") for vote in VOTE_MODES] + [("triplanar", "mean")])
def test_identical_views_round_trip(vote: str, keep: str) -> None:
    rng = np.random.default_rng(0)
    view = (rng.random(SHAPE) > 0.7).astype(np.float32)  # many lesions, some tiny
    mask, _ = fuse_views([view] * 3, vote, min_votes=2, min_size_mm3=0, keep=keep)
    np.testing.assert_array_equal(mask, view.astype(np.uint8))


def test_min_size_uses_export_spacing() -> None:
    view = np.zeros(SHAPE, np.float32)
    view[1, 1, 1:4] = 1.0  # 3 voxels
    assert fuse_views([view] * 3, "mean", spacing_mm=1.0)[0].sum() == 0  # 3 mm³: dropped
    assert fuse_views([view] * 3, "mean", spacing_mm=2.0)[0].sum() == 3  # 24 mm³: kept


def test_min_votes_capped_at_the_number_of_views() -> None:
    view = _cube(2)
    with pytest.warns(UserWarning, match="min-votes"):
        mask = fuse_views([view], "triplanar", min_votes=2)[0]
    assert mask.sum() == 27


def test_unknown_vote() -> None:
    with pytest.raises(ValueError, match="unknown vote"):
        fuse_views([_cube(2)], "maximum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown keep rule"):
        fuse_views([_cube(2)], keep="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown volume rule"):
        fuse_views([_cube(2)], volume_rule="veto")  # type: ignore[arg-type]


@pytest.mark.parametrize("vote", VOTE_MODES)
def test_per_view_thresholds_each_view_at_its_own_operating_point(vote: str) -> None:
    """A model whose maps peak at 0.3 marks its lesions at threshold 0.25, not at 0.5."""
    lesion = np.zeros((12, 12, 12), np.float32)
    lesion[3:7, 3:7, 3:7] = 1.0
    confident, timid = 0.9 * lesion, 0.3 * lesion
    views = [confident] * 3 + [timid] * 3
    at_half, _ = fuse_views(views, vote, min_votes=4, threshold=0.5, min_size_mm3=0)
    own, prob = fuse_views(views, vote, min_votes=4, threshold=[0.5] * 3 + [0.25] * 3, min_size_mm3=0)
    np.testing.assert_array_equal(own, lesion.astype(np.uint8))
    assert at_half.sum() == (lesion.sum() if vote in ("none", "mean") else 0)
    assert prob.max() <= 1.0 and prob[5, 5, 5] > 0.5


def test_per_view_thresholds_must_match_the_views() -> None:
    with pytest.raises(ValueError, match="2 thresholds for 3 views"):
        fuse_views([np.zeros((4, 4, 4), np.float32)] * 3, threshold=[0.5, 0.25])


def test_calibrate_keeps_order_and_ends() -> None:
    prob = np.linspace(0, 1, 101, dtype=np.float32)
    for threshold in (0.1, 0.25, 0.5, 0.8):
        mapped = calibrate(prob, threshold)
        assert mapped[0] == 0.0 and mapped[-1] == pytest.approx(1.0)
        assert np.all(np.diff(mapped) > 0)
        np.testing.assert_array_equal(mapped > 0.5, prob > threshold)


def test_default_votes_are_half_the_views() -> None:
    assert [default_min_votes(n) for n in (1, 2, 3, 4, 6)] == [1, 1, 2, 2, 3]
    extra = np.zeros(SHAPE, np.float32)
    extra[12:15, 12:15, 12:15] = 0.9
    assert fuse_views(_views_with(extra, 2, 3), "triplanar")[0][13, 13, 13] == 1  # 2 of 3 planes
    assert fuse_views(_views_with(extra, 2, 6), "triplanar")[0][13, 13, 13] == 0  # 2 of 6 independent views
    assert fuse_views(_views_with(extra, 3, 6), "triplanar")[0][13, 13, 13] == 1


PLANES = ["axial", "coronal", "sagittal"]


def _ensemble(seen_by: dict[int, list[str]]) -> list[np.ndarray]:
    """Two models x three planes of a common lesion; model ``m`` also sees a second lesion in ``seen_by[m]``."""
    extra = _cube(12)
    return [
        _cube(2) + (extra if plane in seen_by.get(model, []) else 0) for model in (0, 1) for plane in PLANES
    ]


def test_ensemble_votes_between_planes_not_views() -> None:
    """Two models that see a lesion on one plane: one plane's vote; on two different planes: two."""
    same_plane = _ensemble({0: ["axial"], 1: ["axial"]})
    two_planes = _ensemble({0: ["axial"], 1: ["coronal"]})
    assert fuse_views(same_plane, "triplanar", planes=PLANES * 2)[0][13, 13, 13] == 0
    assert fuse_views(two_planes, "triplanar", planes=PLANES * 2)[0][13, 13, 13] == 1
    # As six independent views both would need a third vote.
    assert fuse_views(two_planes, "triplanar")[0][13, 13, 13] == 0


def test_merged_plane_is_the_calibrated_maximum() -> None:
    """A timid model (threshold 0.25) marks a plane's voxel as surely as a confident one at 0.5."""
    timid = np.full((2, 2, 2), 0.3, np.float32)
    quiet = np.zeros((2, 2, 2), np.float32)
    views = [quiet] * 3 + [timid] * 3
    mask, prob = fuse_views(
        views, "majority", threshold=[0.5] * 3 + [0.25] * 3, min_size_mm3=0, planes=PLANES * 2
    )
    assert mask.all() and np.allclose(prob, calibrate(timid, 0.25))
    with pytest.raises(ValueError, match="2 orientations for 3 views"):
        merge_planes([quiet] * 3, PLANES[:2])
