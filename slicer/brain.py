"""Where new lesions can be: the brain, inside the field of view both scans acquired.

Real FLAIR scans show the whole head, the neck and the orbits, and two sessions rarely
cover the same field of view. Statistics taken over the head, and differences taken where
one scan has no data, then make scalp, neck and field-of-view borders look like change.
Three pieces keep every comparison to the brain both scans saw:

- :func:`brain_mask`: the dataset's own mask when it ships one (MSSEG-1's
  ``Brain_Mask.nii.gz``), else one computed offline by deepbet (Fisch et al., "deepbet:
  Fast brain extraction of T1-weighted MRI using convolutional neural networks", Comput.
  Biol. Med. 2024; MIT licence; both networks ship inside its wheel). deepbet was chosen
  because it needs no download, runs on a CPU in seconds, handles 2D FLAIR with thick
  slices, and returns the brain unchanged on scans that are skull-stripped already.
- :func:`acquired`: the voxels a scan acquired: everything but the zero-valued regions
  connected to the grid's border, which is what a middle-space resampling writes where the
  scan's field of view ends (air outside the head is not brain, so it may go too).
- :func:`fov_interior`: the joint field of view less its outer voxel layer, where a
  resampled scan's values mix with the zero fill; intensities are measured and lesions
  looked for inside it, but for
- :func:`slab_interior`: a thick-slice (2D) acquisition's end slices, where inflow artifacts
  brighten the FLAIR: no lesion is reported there.
- :func:`check_joint_fov`: a pair whose joint field of view misses most of the brain
  cannot be compared (:func:`slicer.register.register` carries the baseline's acquired
  region onto the follow-up's grid).

>>> import numpy as np
>>> volume = np.ones((6, 6, 6), np.float32); volume[:, :, :2] = 0; volume[3, 3, 3] = 0
>>> region = acquired(volume)
>>> bool(region[3, 3, 3]), bool(region[0, 0, 0]), int(region.sum())
(True, False, 144)
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from runtime.errors import InputError
from slicer.io import load_mask
from slicer.normalise import fill_holes

__all__ = [
    "BRAIN_MASK_MODES",
    "MIN_JOINT_FOV",
    "brain_mask",
    "compute_brain_mask",
    "acquired",
    "fov_interior",
    "slab_axis",
    "slab_interior",
    "check_joint_fov",
    "SLAB_END_SLICES",
]

BRAIN_MASK_MODES = ("auto", "dataset", "compute", "none")
# Below this share of the brain seen by both scans, a pair cannot be compared.
MIN_JOINT_FOV = 0.5
# The slices at each end of a 2D multi-slice slab where no lesion is reported (see
# :func:`slab_interior`).
SLAB_END_SLICES = 3
# A grid whose largest voxel side is this many times its smallest was acquired in 2D slices.
THICK_SLICE_RATIO = 2.0


@functools.lru_cache(maxsize=2)
def _deepbet(device: str | None):  # noqa: ANN202 - deepbet's class, imported lazily
    with warnings.catch_warnings():  # deepbet loads TorchScript, which torch now warns about
        warnings.simplefilter("ignore", FutureWarning)
        from deepbet import BrainExtraction

        return BrainExtraction(no_gpu=device is not None and not device.startswith("cuda"))


def compute_brain_mask(volume: np.ndarray, affine: np.ndarray, device: str | None = "cpu") -> np.ndarray:
    """Boolean brain mask of ``volume`` (on its own grid), by deepbet, offline.

    ``device``: ``cpu``, ``cuda[:N]``, or None for CUDA when there is one.
    """
    image = nib.Nifti1Image(np.asarray(volume, np.float32), np.asarray(affine, float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _, mask, _ = _deepbet(device).run(image)
    return np.asarray(mask.dataobj) > 0


def brain_mask(
    mode: str,
    volume: np.ndarray,
    affine: np.ndarray,
    shipped: Path | None,
    *,
    scan: Path,
    device: str | None = "cpu",
) -> tuple[np.ndarray | None, dict[str, object]]:
    """The brain mask that ``mode`` asks for, on the scan's grid, and where it came from.

    Args:
        mode: ``auto`` (``shipped`` when there is one, else computed), ``dataset`` (``shipped``,
            required), ``compute`` (deepbet) or ``none`` (no mask: None).
        volume, affine: the follow-up scan the mask belongs to.
        shipped: the dataset's mask file (already checked to be on the scan's grid), or None.
        scan: the scan's path, for error messages.

    Raises:
        InputError: an unknown mode, ``dataset`` without a mask, or an empty mask.
    """
    if mode not in BRAIN_MASK_MODES:
        raise InputError("--brain-mask", f"'{mode}' is not one of {', '.join(BRAIN_MASK_MODES)}")
    if mode == "none":
        return None, {"mode": "none"}
    if mode == "dataset" and shipped is None:
        raise InputError(scan, "--brain-mask dataset: no brain mask ships with this scan")
    if shipped is not None and mode != "compute":
        mask, source = load_mask(shipped)[0] > 0, str(shipped)
    else:
        mask, source = compute_brain_mask(volume, affine, device), "deepbet"
    if tuple(mask.shape) != tuple(volume.shape):
        raise InputError(
            shipped or scan, f"brain mask grid {mask.shape} differs from the scan's {volume.shape}"
        )
    if not mask.any():
        raise InputError(shipped or scan, "brain mask is empty")
    return mask, {"mode": "dataset" if source != "deepbet" else "compute", "source": source}


def acquired(volume: np.ndarray) -> np.ndarray:
    """Voxels the scan acquired: all but the zero-valued regions that touch the grid's border."""
    return fill_holes(np.asarray(volume) != 0)


def fov_interior(joint: np.ndarray) -> np.ndarray:
    """The joint field of view less its outer voxel layer (6-connected), except along the grid's border.

    Where a scan was resampled into a shared space, its edge voxels mix its values with the
    zero written beyond its field of view: a darker baseline there reads as brightening.
    """
    return ndimage.binary_erosion(joint, border_value=1)


def slab_axis(spacing: Sequence[float]) -> int | None:
    """The slice axis of a grid acquired in thick 2D slices; None for a 3D (near-isotropic) one."""
    spacing = np.asarray(spacing, dtype=float)
    return int(np.argmax(spacing)) if spacing.max() >= THICK_SLICE_RATIO * spacing.min() else None


def slab_interior(joint: np.ndarray, slice_axis: int | None, end_slices: int = SLAB_END_SLICES) -> np.ndarray:
    """The joint field of view less ``end_slices`` slices at each of its ends along ``slice_axis``
    (the grid's border counts as an end); all of it without a slice axis.

    A 2D FLAIR's end slices are its entry slices: blood and CSF flowing in have not seen the
    slab's inversion pulses and shine (the flow artifacts of the posterior fossa), in one
    session and not the other. Along the follow-up grid's slice axis (:func:`slab_axis`) the
    joint slab ends at the baseline's zero fill or at the follow-up's own grid border, which
    is its slab's end.
    """
    if slice_axis is None or end_slices == 0:
        return joint.astype(bool, copy=True)
    along = np.zeros((3, 3, 3), bool)
    along[tuple(slice(None) if axis == slice_axis else 1 for axis in range(3))] = True
    return ndimage.binary_erosion(joint, along, iterations=end_slices, border_value=0)


def check_joint_fov(brain: np.ndarray, joint: np.ndarray, scan: Path) -> float:
    """Share of the brain that both scans acquired; raises when under :data:`MIN_JOINT_FOV`."""
    share = float((brain & joint).sum()) / max(int(brain.sum()), 1)
    if share < MIN_JOINT_FOV:
        raise InputError(
            scan,
            f"the two scans' joint field of view covers {share:.0%} of the brain (< {MIN_JOINT_FOV:.0%})",
        )
    return share
