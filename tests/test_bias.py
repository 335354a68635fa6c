"""Bias field correction: N4 removes a known smooth field; prepare_case's default is unchanged."""

from __future__ import annotations

import functools

import nibabel as nib
import numpy as np
import pytest

from simulation.phantom import make_case
from slicer.normalise import n4_correct
from slicer.prepare import prepare_case


def _coefficient_of_variation(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


def test_n4_removes_a_smooth_multiplicative_field() -> None:
    """Two tissues and noise under a known smooth field (about +-40%): what N4 leaves of it
    (corrected / clean, up to a constant) varies far less inside the mask."""
    rng = np.random.default_rng(0)
    shape, spacing = (64, 64, 24), (1.0, 1.0, 3.0)
    grid = np.indices(shape).astype(np.float32) / np.array(shape, np.float32)[:, None, None, None]
    mask = ((grid - 0.5) ** 2 / np.array([0.16, 0.16, 0.2])[:, None, None, None]).sum(axis=0) < 1.0
    clean = np.where(rng.random(shape) < 0.4, 0.6, 1.0).astype(np.float32)  # two tissues
    clean = (clean + rng.normal(0, 0.03, shape)).astype(np.float32) * mask
    field = np.exp(0.8 * (grid[0] - 0.5) + 0.5 * (grid[1] - 0.5) ** 2 - 0.3 * grid[2]).astype(np.float32)
    corrected = n4_correct(clean * field, mask, spacing, shrink_mm=2.0)
    assert corrected.shape == clean.shape and corrected.dtype == np.float32
    inside = mask & (clean > 0)
    before = _coefficient_of_variation(field[inside])
    after = _coefficient_of_variation(corrected[inside] / clean[inside])
    assert before > 0.1 and after < 0.2 * before


def test_n4_without_a_mask_returns_the_volume() -> None:
    volume = np.ones((8, 8, 8), np.float32)
    np.testing.assert_array_equal(n4_correct(volume, np.zeros(volume.shape, bool), (1.0, 1.0, 1.0)), volume)


@functools.cache
def _case():
    return make_case(0, seed=0, voxel=4.0)


def _prepare(**keywords: object):
    case = _case()
    t1_img, t0_img = nib.Nifti1Image(case.t1, case.affine), nib.Nifti1Image(case.t0, case.affine)
    return prepare_case(case.t1, t1_img, case.t0, t0_img, brain=case.brain_mask, spacing=4.0, **keywords)


def test_prepare_case_default_is_no_bias_correction() -> None:
    with pytest.raises(ValueError, match="bias_correction"):
        _prepare(bias_correction="n3")
    default, none, n4 = _prepare(), _prepare(bias_correction="none"), _prepare(bias_correction="n4")
    for name, volume in default.volumes.items():
        np.testing.assert_array_equal(volume, none.volumes[name])
    for name, volume in default.normalised.items():
        np.testing.assert_array_equal(volume, none.normalised[name])
    assert n4.volumes["t1"].shape == default.volumes["t1"].shape
    assert not np.array_equal(n4.normalised["t1n"], default.normalised["t1n"])
