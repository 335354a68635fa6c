"""One case in memory: registered, resampled, cropped, normalised, ready to slice.

:func:`prepare_case` is what the export runs per case and what ``mslong segment`` runs on
one patient (it slices in memory, no files). :func:`slice_channels` builds the 2.5D image
of one slice exactly as the export writes it.

>>> from simulation.phantom import make_case
>>> case = make_case(0, seed=0, voxel=4.0)
>>> t1_img, t0_img = nib.Nifti1Image(case.t1, case.affine), nib.Nifti1Image(case.t0, case.affine)
>>> prepared = prepare_case(case.t1, t1_img, case.t0, t0_img, brain=case.brain_mask, spacing=4.0)
>>> prepared.geometry.shape, sorted(prepared.volumes)
((41, 46, 39), ['diff', 't0', 't1'])
>>> slice_channels(prepared, "axial", 10).shape  # (t1, t0, diff) x slices 9, 10, 11; H = y, W = x
(9, 46, 41)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np

from runtime.lesions import bounding_box
from runtime.threads import in_parallel
from runtime.timing import stage
from slicer.brain import acquired, check_joint_fov, fov_interior, slab_axis, slab_interior
from slicer.geometry import AXIS_OF, CaseGeometry, slice_image
from slicer.io import spacing_of
from slicer.normalise import (
    head_mask,
    match_local_intensity,
    match_to_reference,
    n4_correct,
    robust_rescale,
)
from slicer.register import Registration
from slicer.register import register as register_t0

__all__ = [
    "SOURCES",
    "BIAS_CORRECTIONS",
    "PreparedCase",
    "prepare_case",
    "slice_channels",
    "iter_slices",
    "to_uint8",
    "difference_to_uint8",
]

SOURCES = ("t1", "t0", "diff")
# Head bounding box margin, in mm, so that slices never cut the skull edge.
CROP_MARGIN_MM = 4.0
# Scale of the t0/t1 intensity ratio that local matching removes: far larger than a lesion
# (1 cm³ is a 12 mm sphere), about the scale on which bias fields vary.
LOCAL_MATCHING_MM = 10.0
BIAS_CORRECTIONS = ("none", "n4")  # prepare_case's bias_correction
NEUTRAL_DIFF = np.uint8(128)  # the diff channel's "no change", also where t0 acquired nothing


@dataclass
class PreparedCase:
    """A case on the export grid.

    Attributes:
        geometry: original grid <-> export grid (crop and provenance in ``extra``).
        volumes: uint8 export-grid volumes per source (``t1``, ``t0``, ``diff``).
        normalised: float32 [0, 1] volumes ``t1n`` and ``t0n``.
        head: boolean head mask on the export grid.
        roi: where intensities are measured on the export grid (normalisation, the
            baseline's statistics, the candidates' extent): the brain (the head without a brain
            mask) inside the field of view both scans acquired, less its outer layer
            (:func:`slicer.brain.fov_interior`).
        search: where lesions may be reported: ``roi`` less a thick-slice slab's end slices
            (:func:`slicer.brain.slab_interior`), whose inflow artifacts are no lesion.
        mask: uint8 0/1 new-lesion mask on the export grid (or None).
        soft: optional uint8 0..255 soft mask (mean of raters) on the export grid.
        registration: what brought t0 onto t1 (None without t0).
    """

    geometry: CaseGeometry
    volumes: dict[str, np.ndarray]
    normalised: dict[str, np.ndarray]
    head: np.ndarray
    roi: np.ndarray
    search: np.ndarray
    mask: np.ndarray | None = None
    soft: np.ndarray | None = None
    registration: Registration | None = None
    info: dict[str, object] = field(default_factory=dict)


def to_uint8(normalised: np.ndarray) -> np.ndarray:
    """[0, 1] -> 0..255."""
    return np.rint(np.clip(normalised, 0.0, 1.0) * 255.0).astype(np.uint8)


def difference_to_uint8(t1n: np.ndarray, t0n: np.ndarray) -> np.ndarray:
    """The contract's diff channel: 128 + 127.5 * (t1n - t0n), clipped; no change maps to 128."""
    return np.clip(np.rint(NEUTRAL_DIFF + 127.5 * (t1n - t0n)), 0, 255).astype(np.uint8)


def _mask_to_export(geometry: CaseGeometry, mask: np.ndarray) -> np.ndarray:
    return geometry.to_export(mask.astype(np.uint8), order=0) > 0


def _crop_geometry(t1_img: nib.Nifti1Image, region: np.ndarray, spacing: float) -> CaseGeometry:
    geometry = CaseGeometry.from_image(t1_img, spacing)
    margin = int(np.ceil(CROP_MARGIN_MM / spacing))
    return geometry.with_crop(bounding_box(geometry.to_export(region.astype(np.uint8), order=0) > 0, margin))


def prepare_case(
    t1: np.ndarray,
    t1_img: nib.Nifti1Image,
    t0: np.ndarray | None,
    t0_img: nib.Nifti1Image | None,
    mask: np.ndarray | None = None,
    *,
    soft: np.ndarray | None = None,
    brain: np.ndarray | None = None,
    spacing: float = 1.0,
    register: str = "auto",
    match_histograms: bool = False,
    seed: int = 0,
    source: str | Path = "t1",
    bias_correction: str = "none",
) -> PreparedCase:
    """Register t0 onto t1, resample to ``spacing`` mm, crop and normalise inside the brain.

    Both scans are rescaled from their robust range inside the region of interest (the
    brain both scans acquired; the head without a brain mask) to [0, 1]; t0 is then matched
    to t1 there (histogram, when asked, and always the smooth local intensity ratio: see
    :func:`slicer.normalise.match_local_intensity`), so that ``diff`` shows focal change.
    Where t0 acquired nothing, its channel is 0 and ``diff`` is neutral (128): missing, not
    change.

    Args:
        t1, t1_img: follow-up voxels and image; its grid is the reference.
        t0, t0_img: baseline (None for one time point: only ``t1`` is prepared).
        mask: new-lesion mask on t1's grid (0/1).
        soft: optional soft mask in [0, 1] on t1's grid (mean of raters).
        brain: boolean brain mask on t1's grid (:func:`slicer.brain.brain_mask`); None: the head.
        spacing: isotropic export spacing in mm.
        register: ``auto``, ``rigid``, ``affine`` or ``none`` (see :func:`slicer.register.register`).
        match_histograms: map t0's histogram onto t1's inside the brain before differencing.
        seed: seed of the registration's random sampling.
        source: the follow-up's path, named by errors about the joint field of view.
        bias_correction: ``none``, or ``n4``: each scan's own bias field is removed
            (:func:`slicer.normalise.n4_correct`, fitted in the brain both scans acquired, on
            t1's grid after registration) before resampling. On the real pairs it lowers the
            subtraction baseline's scores (``benchmarks/bench_bias.py``): ``none`` stays.

    Raises:
        slicer.register.RegistrationError: registration failed (the caller decides what to skip).
        InputError: the scans' joint field of view covers under half the brain.
        ValueError: an unknown ``bias_correction``.
    """
    if bias_correction not in BIAS_CORRECTIONS:
        raise ValueError(f"bias_correction '{bias_correction}' is not one of {', '.join(BIAS_CORRECTIONS)}")
    with stage("registration"):
        head_original = head_mask(t1)
        region = head_original if brain is None else brain.astype(bool)
        registration, joint = None, acquired(t1)
        if t0 is not None and t0_img is not None:
            t0, registration, t0_seen = register_t0(
                t1, t1_img, t0, t0_img, register, seed=seed, mask=head_original
            )
            joint &= t0_seen
    share = check_joint_fov(region, joint, Path(source))
    if bias_correction == "n4":
        with stage("bias correction"):
            voxel = spacing_of(t1_img.affine)
            t1 = n4_correct(t1, region & joint, voxel)
            t0 = None if t0 is None else n4_correct(t0, region & joint, voxel)
    with stage("resampling"):
        geometry = _crop_geometry(t1_img, region, spacing)
        thick = slab_axis(spacing_of(t1_img.affine))
        t1_export, t0_export, head, fov, inner, brain_export, slab_export = in_parallel(
            lambda: geometry.to_export(t1, order=1),
            lambda: None if t0 is None else geometry.to_export(t0, order=1),
            partial(_mask_to_export, geometry, head_original),
            partial(_mask_to_export, geometry, joint),
            lambda: _mask_to_export(geometry, fov_interior(joint)),  # the erosion runs in the pool too
            partial(_mask_to_export, geometry, region),
            lambda: _mask_to_export(geometry, slab_interior(joint, thick)),
        )
        roi = brain_export & inner
    with stage("normalisation"):
        t1n, t0n = in_parallel(
            lambda: robust_rescale(t1_export, roi),
            lambda: None if t0_export is None else robust_rescale(t0_export, roi),
        )
        normalised = {"t1n": t1n}
        volumes = {"t1": to_uint8(t1n)}
        if t0n is not None:
            if match_histograms:
                t0n = np.clip(match_to_reference(t0n, normalised["t1n"], roi), 0.0, 1.0)
            t0n = match_local_intensity(t0n, normalised["t1n"], roi, LOCAL_MATCHING_MM / spacing)
            t0n[~fov] = 0.0
            normalised["t0n"] = t0n
            volumes["t0"] = to_uint8(t0n)
            volumes["diff"] = np.where(fov, difference_to_uint8(normalised["t1n"], t0n), NEUTRAL_DIFF)
    return PreparedCase(
        geometry=geometry,
        volumes=volumes,
        normalised=normalised,
        head=head,
        roi=roi,
        search=roi & slab_export,
        mask=None if mask is None else geometry.to_export(mask.astype(np.uint8), order=0),
        soft=None if soft is None else to_uint8(geometry.to_export(soft.astype(np.float32), order=0)),
        registration=registration,
        info={"joint_fov_share": round(share, 4), "roi_voxels": int(roi.sum())},
    )


def slice_channels(
    prepared: PreparedCase,
    orientation: str,
    index: int,
    recipe: Sequence[str] = SOURCES,
    context: int = 1,
) -> np.ndarray:
    """The (C, H, W) uint8 image of one slice: per source, slices ``index - context .. index + context``.

    Neighbours beyond the volume are clamped to its first or last slice.
    """
    missing = [source for source in recipe if source not in prepared.volumes]
    if missing:
        raise ValueError(f"recipe needs {missing} but the case only has {sorted(prepared.volumes)}")
    last = prepared.geometry.shape[AXIS_OF[orientation]] - 1
    neighbours = [min(max(index + offset, 0), last) for offset in range(-context, context + 1)]
    return np.stack(
        [slice_image(prepared.volumes[source], orientation, n) for source in recipe for n in neighbours]
    )


def iter_slices(
    prepared: PreparedCase, orientation: str, recipe: Sequence[str] = SOURCES, context: int = 1
) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, image)`` for every slice of ``orientation`` of the export grid."""
    for index in range(prepared.geometry.shape[AXIS_OF[orientation]]):
        yield index, slice_channels(prepared, orientation, index, recipe, context)
