"""Real lesions transplanted into a pair: contrast and texture kept, nothing else touched."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from runtime.lesions import label_lesions
from simulation.transplant import cut_donors, tissue_sites, transplant


def _tissue(shape: tuple[int, ...], level: float, seed: int) -> np.ndarray:
    """Tissue with a grain (smoothed noise) around ``level``, in a head on a dark background."""
    rng = np.random.default_rng(seed)
    grain = ndimage.gaussian_filter(rng.normal(0, 1, shape), 0.8)
    volume = level * (1 + 0.05 * grain / grain.std())
    volume[:3] = volume[-3:] = 0.0
    return volume.astype(np.float32)


def _donor_scan() -> tuple[np.ndarray, np.ndarray]:
    """A 1 mm scan with one ovoid lesion 1.6 times its tissue, textured as the tissue is."""
    scan = _tissue((48, 48, 48), 100.0, seed=1)
    grid = np.indices(scan.shape)
    lesion = (((grid[0] - 24) / 5.0) ** 2 + ((grid[1] - 24) / 4.0) ** 2 + ((grid[2] - 24) / 4.0) ** 2) <= 1
    scan[lesion] *= 1.6
    return scan, lesion.astype(np.uint8)


def _contrast(volume: np.ndarray, lesion: np.ndarray) -> float:
    """Mean of the lesion over the mean of a ring of tissue around it."""
    ring = ndimage.binary_dilation(lesion, iterations=4) & ~ndimage.binary_dilation(lesion, iterations=2)
    return float(volume[lesion].mean() / volume[ring].mean())


def _texture(volume: np.ndarray, lesion: np.ndarray) -> float:
    """Coefficient of variation inside the lesion (its rim of partial volume left out)."""
    inside = ndimage.binary_erosion(lesion)
    return float(volume[inside].std() / volume[inside].mean())


@pytest.fixture(scope="module")
def donors():
    scan, lesion = _donor_scan()
    return cut_donors(scan, lesion, (1.0, 1.0, 1.0), "donor"), (
        _contrast(scan, lesion > 0),
        _texture(scan, lesion > 0),
    )


def _target(seed: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t1 = np.rint(_tissue((64, 64, 64), 400.0, seed)).astype(np.int16)  # another scanner: 4 times as bright
    t0 = np.rint(_tissue((64, 64, 64), 380.0, seed + 1)).astype(np.int16)
    brain = np.zeros(t1.shape, bool)
    brain[6:58, 6:58, 6:58] = True
    return t1, t0, brain


def test_inserted_lesion_keeps_its_contrast_and_texture(donors) -> None:
    donor_list, (contrast, texture) = donors
    t1, t0, brain = _target()
    moved, label, _, placements = transplant(t1, t0, brain, (1.0, 1.0, 1.0), donor_list, count=1, seed=0)
    assert len(placements) == 1 and label_lesions(label)[1] == 1
    assert _contrast(moved.astype(np.float32), label > 0) == pytest.approx(contrast, rel=0.2)
    assert _texture(moved.astype(np.float32), label > 0) == pytest.approx(texture, rel=0.2)


def test_nothing_changes_outside_the_footprint_and_t0_is_untouched(donors) -> None:
    t1, t0, brain = _target()
    before_t0 = t0.copy()
    moved, label, footprint, placements = transplant(
        t1, t0, brain, (1.0, 1.0, 1.0), donors[0], count=3, seed=4
    )
    assert placements
    assert moved.dtype == t1.dtype and moved.shape == label.shape == footprint.shape == t1.shape
    assert np.array_equal(moved[~footprint], t1[~footprint]) and (moved[footprint] != t1[footprint]).any()
    assert np.all(label <= footprint) and np.array_equal(t0, before_t0)


def test_lesions_land_in_tissue_clear_of_old_lesions_and_csf(donors) -> None:
    t1, t0, brain = _target()
    old = np.zeros(t1.shape, bool)
    old[10:54, 10:54, 28:36] = True  # a slab of old lesion across the brain, in both sessions
    csf = np.zeros(t1.shape, bool)
    csf[10:54, 10:54, 40:46] = True
    for scan in (t1, t0):
        scan[old] = (scan[old] * 1.8).astype(np.int16)
        scan[csf] = (scan[csf] * 0.2).astype(np.int16)
    sites = tissue_sites(t1, t0, brain, (1.0, 1.0, 1.0))
    # Periventricular is a place for MS lesions: next to CSF, not in it; old lesions keep 3 mm clear.
    assert sites.any() and not (sites & (ndimage.binary_dilation(old, iterations=3) | csf)).any()
    _, label, footprint, _ = transplant(t1, t0, brain, (1.0, 1.0, 1.0), donors[0], count=4, seed=1)
    assert label.any() and not (label & (old | csf)).any() and not (footprint & old).any()
    assert (footprint & csf).sum() <= 0.1 * footprint.sum()


def test_thick_slices_dilute_a_lesion_as_a_2d_acquisition_does(donors) -> None:
    donor_list, (contrast, _) = donors
    t1, t0, brain = _target()
    thick_t1, thick_t0, thick_brain = (volume[:, :, ::3] for volume in (t1, t0, brain))
    moved, label, _, _ = transplant(
        thick_t1, thick_t0, thick_brain, (1.0, 1.0, 3.0), donor_list, count=1, seed=0
    )
    assert label.any() and 1.0 < _contrast(moved.astype(np.float32), label > 0) < contrast
