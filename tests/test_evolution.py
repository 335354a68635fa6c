"""Lesion-evolution simulation: a single time point becomes a pair whose new lesions were erased.

Most tests run on a small synthetic scan made here: a head of textured tissue (spatially correlated
noise, as in a real scan) holding bright lesions with a partial-volume edge.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import ndimage

from runtime.lesions import label_lesions
from simulation.evolution import (
    BLEND_VOXELS,
    RIM_VOXELS,
    Evolution,
    apply_evolution,
    draw_evolution,
    erase_lesions,
    simulate_evolution,
)
from slicer.export import ExportOptions, export_dataset
from slicer.geometry import CaseGeometry, slice_image
from slicer.io import load_mask, spacing_of

SHAPE = (72, 72, 36)
TISSUE = 100.0
LESION = 45.0  # brightness of a lesion above the tissue
AXIAL_LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)[:, :, None]
CENTRES = [(x, y, z) for x in (20, 36, 52) for y in (24, 48) for z in (12, 24)]


@pytest.fixture(scope="module")
def scan() -> tuple[np.ndarray, np.ndarray]:
    """A synthetic single-time-point scan (float32, 0 outside the head) and its lesion mask.

    The lesions lie at least 3 mm inside the head, so every shell of the tests is tissue.
    """
    rng = np.random.default_rng(7)
    grid = np.indices(SHAPE, dtype=np.float32)
    head = np.zeros(SHAPE, bool)
    head[3:-3, 3:-3, 3:-3] = True
    noise = ndimage.gaussian_filter(rng.normal(size=SHAPE).astype(np.float32), 0.8)
    tissue = TISSUE + 0.1 * grid[0] + 6.0 * noise / noise.std()
    mask = np.zeros(SHAPE, bool)
    for index, point in enumerate(CENTRES):
        radius = 2.5 + index % 3
        mask |= (((grid - np.asarray(point, np.float32)[:, None, None, None]) ** 2).sum(axis=0)) <= radius**2
    # Partial volume: the lesion's brightness is blurred over its edge.
    lesion = LESION * ndimage.gaussian_filter(mask.astype(np.float32), 0.7)
    return np.where(head, tissue + lesion, 0.0).astype(np.float32), mask.astype(np.uint8)


def _axial_roughness(volume: np.ndarray) -> np.ndarray:
    """Absolute 2D Laplacian of every axial slice (the measure of the issue and the benchmark)."""
    return np.abs(ndimage.correlate(volume, AXIAL_LAPLACIAN, mode="reflect"))


def _shell(region: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Voxels 1-3 mm around ``region``, outside every lesion (all in the head here)."""
    distance = ndimage.distance_transform_edt(~region)
    return (distance > 1.0) & (distance <= 3.0) & (mask == 0)


def test_new_mask_is_exactly_the_erased_lesions_and_the_rest_is_untouched(scan) -> None:
    t1, mask = scan
    t0, new, evolution = simulate_evolution(t1, mask, seed=3)
    labels, count = label_lesions(mask)
    assert count == len(CENTRES) and 1 <= len(evolution.removed) < count
    assert not set(evolution.removed) & set(evolution.grown)
    np.testing.assert_array_equal(new, np.isin(labels, evolution.removed).astype(np.uint8))
    assert new.dtype == np.uint8 and t0.dtype == np.float32
    # Only the changing lesions and the voxels within rim + blend of them differ.
    changing = np.isin(labels, evolution.removed + evolution.grown)
    reach = ndimage.distance_transform_edt(~changing) < RIM_VOXELS + BLEND_VOXELS
    np.testing.assert_array_equal(t0[~reach], t1[~reach])
    kept = (labels > 0) & ~changing
    np.testing.assert_array_equal(t0[kept], t1[kept])


def test_erased_lesions_have_the_texture_and_level_of_the_tissue_around(scan) -> None:
    t1, mask = scan
    t0, new, _ = simulate_evolution(t1, mask, seed=0, new_fraction=1.0)
    inside, shell = new > 0, _shell(new > 0, mask)
    rough = _axial_roughness(t0)
    ratio = rough[inside].mean() / rough[shell].mean()
    assert 0.8 < ratio < 1.2, ratio
    assert abs(t0[inside].mean() - t0[shell].mean()) < 0.03 * TISSUE
    assert t1[inside].mean() > t1[shell].mean() + 0.5 * LESION  # there were lesions to erase
    # The measure tells a speckle fill (tissue values drawn independently, the former fill) apart.
    speckle = t0.copy()
    speckle[inside] = np.random.default_rng(0).choice(t1[shell], size=int(inside.sum()))
    rough = _axial_roughness(speckle)
    assert rough[inside].mean() / rough[shell].mean() > 1.5


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.7, 3.0)])
def test_erased_lesions_leave_no_ring(scan, spacing: tuple[float, float, float]) -> None:
    # Partial volume spreads over a voxel whatever its size: thick slices get the same clean edge.
    t1, mask = scan
    t0, new, _ = simulate_evolution(t1, mask, spacing, seed=0, new_fraction=1.0)
    distance = ndimage.distance_transform_edt(new == 0)
    tissue = t0[_shell(new > 0, mask)].mean()
    for near, far in ((0.5, 1.0), (1.0, 1.5), (1.5, 2.0)):
        ring = (distance > near) & (distance <= far)
        assert abs(t0[ring].mean() - tissue) < 0.03 * TISSUE, (near, far)
    # Every voxel beside an erased lesion, along the thick axis too, is replaced (the rim).
    beside = ndimage.binary_dilation(new > 0) & (mask == 0)
    assert (t0[beside] != t1[beside]).all()


def test_grown_lesions_are_smaller_at_baseline_and_not_new(scan) -> None:
    t1, mask = scan
    t0, new, evolution = simulate_evolution(t1, mask, seed=1, grow_fraction=1.0)
    labels, _ = label_lesions(mask)
    assert evolution.grown and len(evolution.growth) == len(evolution.grown)
    assert not (new.astype(bool) & np.isin(labels, evolution.grown)).any()
    halfway = TISSUE + LESION / 2
    for label, growth in zip(evolution.grown, evolution.growth, strict=True):
        lesion = labels == label
        at_t1, at_t0 = int((t1[lesion] > halfway).sum()), int((t0[lesion] > halfway).sum())
        # The bright core keeps about 1/growth³ of the lesion (its blurred edge makes it fuzzy).
        assert 0 < at_t0 < at_t1
        assert at_t0 == pytest.approx(lesion.sum() / growth**3, rel=0.5)


def test_same_seed_same_pair(scan) -> None:
    t1, mask = scan
    first = simulate_evolution(t1, mask, seed=5, drift=0.05)
    again = simulate_evolution(t1, mask, seed=5, drift=0.05)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2] == again[2]
    assert any(simulate_evolution(t1, mask, seed=s)[2].removed != first[2].removed for s in range(6, 9))
    record = json.loads(json.dumps(first[2].to_dict()))
    assert set(record) == {"removed", "grown", "growth", "drift", "shift", "noise_seed"}


def test_reacquired_baseline_has_noise_of_its_own(scan) -> None:
    t1, mask = scan
    shared, new, plain = simulate_evolution(t1, mask, seed=3)
    t0, new_again, evolution = simulate_evolution(t1, mask, seed=3, reacquire=True)
    assert evolution.removed == plain.removed and np.array_equal(new, new_again)
    assert evolution.noise_seed is not None and 0 < max(abs(v) for v in evolution.shift) <= 0.5
    head = ndimage.binary_erosion(t1 > 0, iterations=2)
    far = head & ~ndimage.binary_dilation(mask > 0, iterations=5)  # tissue away from every lesion
    np.testing.assert_array_equal(shared[far], t1[far])  # not re-acquired: t1's own voxels
    grain = t1[far] - ndimage.gaussian_filter(t1, 1.5)[far]
    difference = (t0 - t1)[far]
    assert difference.std() > grain.std() and abs(difference.mean()) < 0.01 * TISSUE
    roughness = _axial_roughness(t0)[far].mean() / _axial_roughness(t1)[far].mean()
    assert 0.85 < roughness < 1.15, roughness
    assert (t0[~ndimage.binary_dilation(t1 > 0, np.ones((3, 3, 3)))] == 0).all() and (t0[head] > 0).all()


def test_draws_respect_the_fractions_and_the_lesion_size_rule() -> None:
    rng = np.random.default_rng(0)
    volumes = np.array([4.0] * 10 + [200.0] * 10)
    evolution = draw_evolution(volumes, rng, new_fraction=0.5, grow_fraction=1.0)
    assert len(evolution.removed) == 10
    # A 4 mm³ lesion has no baseline core left above 3 mm³: it never grows, the large ones all do.
    assert set(evolution.grown) == set(range(11, 21)) - set(evolution.removed)
    assert all(1.25 <= g <= 1.6 for g in evolution.growth)
    assert len(draw_evolution(np.array([50.0]), rng, new_fraction=0.0).removed) == 1
    assert draw_evolution(np.array([]), rng).removed == ()


def test_drift_scales_t0_by_a_smooth_field(scan) -> None:
    t1, mask = scan
    labels, _ = label_lesions(mask)
    corners = (0.95, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.05)
    t0, _ = apply_evolution(t1, labels, Evolution(removed=(1,), grown=(), growth=(), drift=corners))
    reference, _ = apply_evolution(t1, labels, Evolution(removed=(1,), grown=(), growth=(), drift=(1.0,) * 8))
    ratio = t0[reference > 0] / reference[reference > 0]
    assert ratio.min() >= 0.95 and ratio.max() <= 1.05 and ratio.std() > 0.005
    centre = tuple(n // 2 for n in SHAPE)
    assert t0[centre] == pytest.approx(reference[centre], rel=0.01)


def test_export_simulates_single_time_point_data(phantom_root: Path, tmp_path: Path) -> None:
    registry = tmp_path / "datasets.yaml"
    entry = {"t1": "{case}/flair_time02_on_middle_space.nii.gz", "consensus": "{case}/ground_truth.nii.gz"}
    registry.write_text(yaml.safe_dump({"datasets": {"single": {"root": str(phantom_root), **entry}}}))
    out = tmp_path / "out"
    options = dict(dataset="single", registry=registry, out=out, spacing=4.0, orientations=("axial",))
    summary = export_dataset(ExportOptions(simulate_evolution=True, **options))
    assert summary.cases == 4 and summary.lesion_slices > 0
    manifest = pd.read_csv(out / "manifest.csv")
    for case, rows in manifest.groupby("case"):
        geometry = CaseGeometry.load(out / "cases" / f"{case}.json")
        consensus, img = load_mask(phantom_root / case / "ground_truth.nii.gz")
        labels, _ = label_lesions(consensus, spacing_of(img.affine))
        removed = json.loads((out / "cases" / f"{case}.json").read_text())["extra"]["evolution"]["removed"]
        expected = geometry.to_export(np.isin(labels, removed).astype(np.uint8), order=0)
        for row in rows.itertuples():
            png = cv2.imread(str(out / "masks" / row.split / f"{row.stem}.png"), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(png, slice_image(expected, "axial", row.index) * 255)


def test_erase_lesions_gives_a_lesion_free_copy(scan: tuple[np.ndarray, np.ndarray]) -> None:
    """Every lesion, the smallest included, takes the tissue's level; beyond its rim and blend
    every voxel is the scan's own."""
    image, mask = scan
    mask = mask.copy()
    mask[40, 60, 30] = 1  # one voxel: below the smallest lesion MSSEG-2 counts, erased all the same
    image = image.copy()
    image[40, 60, 30] += LESION
    erased = erase_lesions(image, mask)
    lesion = mask > 0
    distance = ndimage.distance_transform_edt(~lesion)
    around = float(np.median(image[(distance > 3) & (distance < 6)]))  # the tissue beside them
    assert abs(float(np.median(erased[lesion])) - around) < 0.1 * LESION
    assert float(erased[40, 60, 30]) < around + 0.5 * LESION
    reach = distance > RIM_VOXELS + BLEND_VOXELS
    np.testing.assert_array_equal(erased[reach], image[reach])
    assert erased.dtype == np.float32
