"""Registration of the baseline (t0) onto the follow-up (t1) with SimpleITK.

The follow-up defines the grid (t1 is fixed, t0 moving), so labels and predictions never
move. Mattes mutual information on the whole image (a head mask on the fixed image made it
diverge on scans whose contrast changed: the skull edge carries the signal), three
resolution levels of about 8, 4 and 2 mm voxels and a centred initial transform. Both scans
are first resampled onto isotropic 1 mm grids, so that a 2D FLAIR of 3-5 mm slices keeps
its slices in the coarse levels (a pyramid shrinks every axis by one factor). ``auto``
skips the work when both scans share one grid and a cheap test says they are already aligned (MSSEG-2's scans are
all resampled onto a "middle space").

Only what both scans acquired is compared: a baseline zero-filled beyond its field of
view (:func:`slicer.brain.acquired`) is tested for alignment where it has data, and its
acquired region travels onto t1's grid with it.

The transform is reported as ``t1_to_t0_world``: a 4x4 matrix taking a world point (RAS
mm, nibabel's convention) of t1 anatomy to where that anatomy sits in t0 - SimpleITK's
fixed-to-moving direction, turned from LPS into RAS.

>>> from simulation.phantom import make_case
>>> case = make_case(0, seed=0, voxel=4.0)
>>> t1_img, t0_img = nib.Nifti1Image(case.t1, case.affine), nib.Nifti1Image(case.t0, case.affine)
>>> moved, info, seen = register(case.t1, t1_img, case.t0, t0_img, method="auto")
>>> info.method, info.reason, bool(np.allclose(info.t1_to_t0_world, np.eye(4)))
('none', 'auto: same grid, already aligned', True)
>>> moved.dtype, moved.shape == case.t1.shape
(dtype('float32'), True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from slicer.brain import acquired
from slicer.io import GRID_TOLERANCE_MM, spacing_of
from slicer.normalise import head_mask

__all__ = ["METHODS", "Registration", "RegistrationError", "register", "looks_aligned", "edge_correlation"]

METHODS = ("auto", "rigid", "affine", "none")
# Below this edge correlation (see :func:`edge_correlation`) registration is declared failed.
MIN_CORRELATION = 0.5
# LPS (ITK) <-> RAS (nibabel): flip the first two world axes.
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


# The registration runs on both scans resampled to isotropic voxels of this size; the pyramid's
# levels then shrink that grid to 8, 4 and 2 mm voxels.
PYRAMID_VOXEL_MM = 1.0

# Fraction of the fixed voxels of each level sampled by the metric: about 20 000 points at
# the 2 mm level, as accurate as 10 % (benchmarks/bench_export.py) at a fifth of the cost.
SAMPLING_FRACTION = 0.02


class RegistrationError(Exception):
    """Registration did not converge; the case is left out of the export and listed."""


@dataclass(frozen=True)
class Registration:
    """What was done to bring t0 onto t1's grid (saved in the case JSON)."""

    method: str
    reason: str
    t1_to_t0_world: np.ndarray
    parameters: tuple[float, ...] = ()
    metric: float | None = None
    correlation: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "reason": self.reason,
            "t1_to_t0_world": np.round(self.t1_to_t0_world, 6).tolist(),
            "parameters": [round(float(p), 6) for p in self.parameters],
            "metric": self.metric,
            "correlation": self.correlation,
            "seconds": round(self.seconds, 3),
        }


# The alignment tests run on a grid of about this voxel size (mm): fine enough to see a
# millimetre or two of misalignment, coarse enough to cost a fraction of a second.
TEST_VOXEL_MM = 2.0


def _step(voxel_mm: float) -> tuple[slice, ...]:
    return (slice(None, None, max(1, int(TEST_VOXEL_MM // voxel_mm))),) * 3


def _edges(volume: np.ndarray, step: tuple[slice, ...]) -> np.ndarray:
    """Gradient magnitude on the test grid: where tissue boundaries are, whatever the contrast."""
    return ndimage.gaussian_gradient_magnitude(volume[step].astype(np.float32), sigma=1.0)


def edge_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray, voxel_mm: float = 1.0) -> float:
    """Correlation of the two volumes' edge maps inside ``mask``: about 0.9 for one head
    aligned (even when scanner or contrast changed), lower when misaligned, 0 for noise."""
    step = _step(voxel_mm)
    inside = mask[step]
    x, y = (_edges(v, step)[inside].astype(np.float64) for v in (a, b))
    x -= x.mean()
    y -= y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def _octant_sums(volume: np.ndarray, centre: np.ndarray) -> np.ndarray:
    for axis, cut in enumerate(centre):
        volume = np.add.reduceat(volume, [0, int(cut)], axis=axis)
    return volume


def looks_aligned(t1: np.ndarray, t0: np.ndarray, mask: np.ndarray, voxel_mm: float = 1.0) -> bool:
    """Cheap test that two volumes on one grid are aligned to within about a voxel.

    On edge maps on a grid of about 2 mm (robust to contrast changes between scanners), the
    product of the two summed in each octant of the head must be larger without shift
    than with t0 shifted by one test voxel along any axis: a translation moves the peak
    everywhere, a rotation moves it in opposite directions in opposite octants. Masking
    both maps favours no shift at the head's edge, so unrelated images can pass: callers
    also require :func:`edge_correlation` of at least ``MIN_CORRELATION``.
    """
    step = _step(voxel_mm)
    inside = mask[step]
    if inside.sum() < 64:
        return False
    edges = (_edges(t1, step), _edges(t0, step))
    a, b = (np.where(inside, e / (e[inside].mean() + 1e-6), 0.0) for e in edges)
    centre = np.clip(np.round(np.argwhere(inside).mean(axis=0)), 1, np.asarray(a.shape) - 1)
    unshifted = _octant_sums(a * b, centre)
    for axis in range(3):
        for shift in (-1, 1):
            if np.any(_octant_sums(a * np.roll(b, shift, axis=axis), centre) > unshifted):
                return False
    return True


def _same_grid(img: nib.Nifti1Image, reference: nib.Nifti1Image) -> bool:
    return img.shape[:3] == reference.shape[:3] and np.allclose(
        img.affine, reference.affine, atol=GRID_TOLERANCE_MM
    )


def _to_sitk(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0), dtype=np.float32))
    spacing = spacing_of(affine)
    lps = _FLIP @ np.asarray(affine, dtype=float)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in lps[:3, 3]])
    image.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    return image


def _world_matrix(transform: sitk.Transform) -> np.ndarray:
    """4x4 RAS matrix of a matrix-offset transform (Euler3D or Affine)."""
    matrix = np.asarray(transform.GetMatrix()).reshape(3, 3)
    centre = np.asarray(transform.GetCenter())
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = np.asarray(transform.GetTranslation()) + centre - matrix @ centre
    return _FLIP @ lps @ _FLIP


def _isotropic(image: sitk.Image, voxel_mm: float) -> sitk.Image:
    """``image`` on an isotropic grid of ``voxel_mm`` over the same box, low-passed first where
    that grid is coarser (a thick-slice scan's pyramid would otherwise shrink its few slices
    as much as its fine in-plane axes)."""
    spacing = np.asarray(image.GetSpacing())
    size = np.maximum(np.round(np.asarray(image.GetSize()) * spacing / voxel_mm), 1).astype(int)
    sigma = np.maximum(voxel_mm**2 - spacing**2, 0.0) ** 0.5 / 2.0  # in mm, per axis
    image = sitk.SmoothingRecursiveGaussian(image, [float(v) for v in np.maximum(sigma, 1e-3)])
    origin = image.TransformContinuousIndexToPhysicalPoint([-0.5 + 0.5 * voxel_mm / s for s in spacing])
    return sitk.Resample(
        image, [int(n) for n in size], sitk.Transform(), sitk.sitkLinear, origin, [voxel_mm] * 3,
        image.GetDirection(), 0.0, image.GetPixelID(),
    )  # fmt: skip


def _run_registration(
    fixed: sitk.Image, moving: sitk.Image, method: str, seed: int
) -> tuple[sitk.Transform, float]:
    fixed, moving = _isotropic(fixed, PYRAMID_VOXEL_MM), _isotropic(moving, PYRAMID_VOXEL_MM)
    kind = sitk.Euler3DTransform() if method == "rigid" else sitk.AffineTransform(3)
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, kind, sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    method_ = sitk.ImageRegistrationMethod()
    method_.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method_.SetMetricSamplingStrategy(method_.RANDOM)
    # SimpleITK reads seed 0 as "seed from the wall clock": shift by one to stay deterministic.
    method_.SetMetricSamplingPercentage(SAMPLING_FRACTION, seed + 1)
    # Gradients at the sampled points only: the gradient filters compute them over the whole
    # full-resolution image at every level, most of the time at 1 mm for nothing.
    method_.SetMetricUseFixedImageGradientFilter(False)
    method_.SetMetricUseMovingImageGradientFilter(False)
    method_.SetInterpolator(sitk.sitkLinear)
    method_.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=100, relaxationFactor=0.6
    )
    method_.SetOptimizerScalesFromPhysicalShift()
    # Finest level about 2 mm: sub-millimetre accuracy already, at an eighth of the cost of 1 mm.
    method_.SetShrinkFactorsPerLevel([max(1, round(mm / PYRAMID_VOXEL_MM)) for mm in (8.0, 4.0, 2.0)])
    method_.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    method_.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method_.SetInitialTransform(initial, inPlace=True)
    method_.Execute(fixed, moving)
    return initial, float(method_.GetMetricValue())


def register(
    t1: np.ndarray,
    t1_img: nib.Nifti1Image,
    t0: np.ndarray,
    t0_img: nib.Nifti1Image,
    method: str = "auto",
    *,
    seed: int = 0,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, Registration, np.ndarray]:
    """Bring ``t0`` onto ``t1``'s grid; returns the resampled t0 (float32), what was done, and
    the voxels of t1's grid that t0 acquired (boolean).

    Args:
        t1, t1_img: follow-up voxels and image (the fixed grid).
        t0, t0_img: baseline voxels and image (moving).
        method: ``auto`` (register unless same grid and already aligned), ``rigid``,
            ``affine`` or ``none`` (t0 must then be on t1's grid).
        seed: seed of the metric's random sampling (deterministic results).
        mask: head mask of t1 when the caller has it already (else computed here).

    Raises:
        RegistrationError: the optimiser failed or the result does not correlate.
    """
    if method not in METHODS:
        raise ValueError(f"registration method {method!r} is not one of {METHODS}")
    started = time.perf_counter()
    same_grid = _same_grid(t0_img, t1_img)
    mask = head_mask(t1) if mask is None else mask
    seen = acquired(t0)
    voxel_mm = float(spacing_of(t1_img.affine).min())
    compared = mask & seen if same_grid else None
    before = edge_correlation(t1, t0, compared, voxel_mm) if same_grid else None
    skip = method == "none" or (
        method == "auto"
        and before is not None
        and before >= MIN_CORRELATION
        and looks_aligned(t1, t0, compared, voxel_mm)
    )
    if skip:
        if before is None:
            raise RegistrationError("t0 is on another grid than t1; --register none cannot use it")
        reason = "asked for none" if method == "none" else "auto: same grid, already aligned"
        info = Registration("none", reason, np.eye(4), correlation=round(before, 4))
        return t0.astype(np.float32, copy=False), info, seen
    chosen = "rigid" if method == "auto" else method
    fixed, moving = _to_sitk(t1, t1_img.affine), _to_sitk(t0, t0_img.affine)
    try:
        transform, metric = _run_registration(fixed, moving, chosen, seed)
    except RuntimeError as error:
        raise RegistrationError(f"{chosen} registration failed: {str(error).splitlines()[-1]}") from None
    background = float(np.percentile(t0, 1))
    resampled = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, background, sitk.sitkFloat32)
    moved = sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)
    seen_image = _to_sitk(seen.astype(np.float32), t0_img.affine)
    seen = sitk.GetArrayFromImage(sitk.Resample(seen_image, fixed, transform, sitk.sitkNearestNeighbor, 0.0))
    seen = seen.transpose(2, 1, 0) > 0.5
    score = edge_correlation(t1, moved, mask & seen, voxel_mm)
    if not np.isfinite(metric) or score < MIN_CORRELATION:
        raise RegistrationError(
            f"{chosen} registration did not converge (edge correlation {score:.2f} < {MIN_CORRELATION})"
        )
    reason = "auto: grids differ" if method == "auto" and not same_grid else f"{method}"
    if method == "auto" and same_grid:
        reason = "auto: same grid, misaligned"
    info = Registration(
        chosen,
        reason,
        _world_matrix(transform),
        parameters=tuple(transform.GetParameters()),
        metric=round(metric, 5),
        correlation=round(score, 4),
        seconds=time.perf_counter() - started,
    )
    return np.ascontiguousarray(moved), info, seen
