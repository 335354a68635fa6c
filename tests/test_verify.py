"""Candidates verified one by one: the proposal, the training, the shipped verifier, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusion.verify import FEATURES, MONOTONE, find_candidates, load_verifier
from fusion.verify_train import Examples, lesion_scores, train_verifier
from mslong.segment import segment_patient
from runtime.errors import InputError
from slicer.datasets import load_dataset
from slicer.io import load_mask

MSLONG = str(Path(sys.executable).with_name("mslong"))


def _pair(
    rng: np.random.Generator, new: int, old: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Normalised t1n/t0n with ``new`` blobs bright at follow-up only and ``old`` blobs that were
    already bright at baseline and brighten further (old lesions: not new); the new-lesion mask."""
    t0n = rng.normal(0.5, 0.02, (64, 64, 64)).astype(np.float32)
    t1n = t0n + rng.normal(0, 0.01, t0n.shape).astype(np.float32)
    label = np.zeros(t0n.shape, np.uint8)
    centres = rng.permutation([(x, y, z) for x in (14, 32, 50) for y in (14, 32, 50) for z in (14, 32, 50)])
    for index, (x, y, z) in enumerate(centres[: new + old]):
        blob = (slice(x - 2, x + 3), slice(y - 2, y + 3), slice(z - 2, z + 2))
        t1n[blob] += 0.35
        if index < new:
            label[blob] = 1
        else:
            t0n[blob] += 0.25
    return t1n, t0n, label, np.pad(np.ones((56, 56, 56), bool), 4)


def _examples(seed: int, cases: int) -> Examples:
    """Candidates of synthetic pairs, labelled as :func:`fusion.verify_train.case_examples` labels them."""
    rng = np.random.default_rng(seed)
    parts = []
    for case in range(cases):
        t1n, t0n, label, roi = _pair(rng, new=4, old=4)
        found = find_candidates(t1n, t0n, roi, spacing=1.0)
        matched = np.array([label[found.labels == i + 1].max() for i in range(found.count)]) * np.arange(
            1, found.count + 1
        )
        parts.append(Examples(found.features, (matched > 0).astype(np.float32),
                              np.zeros(found.count, np.int64), matched, np.array([4]), [f"case{case}"]))  # fmt: skip
    return Examples.join(parts)


def test_candidates_are_outlined_and_described() -> None:
    t1n, t0n, label, roi = _pair(np.random.default_rng(0), new=2, old=1)
    found = find_candidates(t1n, t0n, roi, spacing=1.0)
    assert found.features.shape == (found.count, len(FEATURES)) and found.labels.max() == found.count
    # The three blobs stand far above the noise's candidates (the proposal is meant to be loose).
    strong = found.features[:, FEATURES.index("max_z")] > 20
    assert strong.sum() == 3 and set(np.unique(found.labels[(label > 0) | (t0n > 0.65)])) - {0} <= set(
        np.flatnonzero(strong) + 1
    )
    # Each is its blob (100 voxels), not the blob and its smoothed halo.
    assert np.all(np.exp(found.features[strong, FEATURES.index("log_volume_mm3")]) < 200)
    assert np.sum(found.features[strong, FEATURES.index("mean_brightness_t0")] > 5) == 1  # the old lesion


def test_training_learns_new_from_old_and_picks_its_threshold() -> None:
    train, held_out = _examples(seed=1, cases=4), _examples(seed=2, cases=2)
    verifier = train_verifier(train, held_out, spacing=1.0, seed=0)
    f1, _, _ = lesion_scores(held_out, verifier.score(held_out.features) > verifier.threshold)
    assert f1 >= 0.9 and verifier.record["held_out_at_threshold"]["f1"] == pytest.approx(f1, abs=1e-4)


def test_verifier_round_trip_equals_scikit_learn_and_refuses_bad_files(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    train, held = _examples(3, 2), _examples(5, 1)
    verifier = train_verifier(train, _examples(4, 1), spacing=1.0)
    verifier.save(tmp_path / "v.npz")
    again = load_verifier(tmp_path / "v.npz")
    assert np.array_equal(again.score(held.features), verifier.score(held.features))
    assert again.threshold == verifier.threshold and again.record == verifier.record
    # The trees evaluated from plain arrays give scikit-learn's own probabilities.
    model = HistGradientBoostingClassifier(max_depth=3, max_iter=200, learning_rate=0.05, l2_regularization=1.0,
                                           monotonic_cst=[MONOTONE.get(n, 0) for n in FEATURES], early_stopping=False,
                                           random_state=0).fit(train.features, train.target.astype(int))  # fmt: skip
    assert np.allclose(verifier.score(held.features), model.predict_proba(held.features)[:, 1], atol=1e-5)
    (tmp_path / "bad.npz").write_bytes(b"not a verifier")
    with pytest.raises(InputError, match="bad.npz: not a lesion verifier"):
        load_verifier(tmp_path / "bad.npz")


def _run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MSLONG, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--verifier", "v.npz", "--weights", "m.pt"), "--verifier: checks the baseline's own candidates"),
        (("--verifier", "v.npz", "--baseline-z", "4"), "--verifier: checks the baseline's own candidates"),
        (("--verifier", "missing.npz"), "missing.npz: no such verifier file"),
    ],
)
def test_segment_verifier_options(phantom_root: Path, tmp_path: Path, extra: tuple, message: str) -> None:
    case = load_dataset("phantom", root=phantom_root)[0]
    out = tmp_path / "seg.nii.gz"
    process = _run("segment", "-t1", case.t0, "-t2", case.t1, "-o", out, *extra)
    assert process.returncode == 2 and len(process.stderr.strip().splitlines()) == 1, process.stderr
    assert message in process.stderr and not out.exists()


def test_train_verifier_offline_then_segment_with_it(
    phantom_root: Path, tmp_path: Path, no_network: None
) -> None:
    from mslong.cli import main

    out = tmp_path / "verifier.npz"
    cases = load_dataset("phantom", root=phantom_root)
    main(["train-verifier", "--pairs", "phantom", "--pairs-root", str(phantom_root), "--cases", cases[0].id,
          "--draws", "1", "--held-out", "1", "--spacing", "2", "--out", str(out)])  # fmt: skip
    trained = load_verifier(out)
    assert trained.spacing == 2.0 and trained.record["pairs"] == [cases[0].id]
    assert trained.record["train_cases"] == [f"{cases[0].id}_forward_d0", f"{cases[0].id}_reversed_d0"]
    # Another case, segmented by the verifier: each lesion it keeps is a candidate it scored above its threshold.
    case = max(cases[1:], key=lambda c: load_mask(c.consensus)[0].sum())
    result = segment_patient(case.t0, case.t1, tmp_path / "seg.nii.gz", verifier=out, device="cpu")
    assert result.models == ("verified candidates",) and result.spacing == 2.0 and result.new_lesions > 0
    lesions = pd.read_csv(tmp_path / "seg_lesions.csv")
    assert len(lesions) == result.new_lesions and (lesions["mean_probability"] > trained.threshold).all()
