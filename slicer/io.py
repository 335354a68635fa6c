"""Reading volumes safely: checked NIfTI loading.

Loading checks what breaks later steps in confusing ways (missing or unreadable file,
4D data, NaN, constant images, non-binary masks, grids that disagree) and raises
:class:`~runtime.errors.InputError` naming the file. Writing is :mod:`runtime.files`' job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from runtime.errors import InputError

__all__ = [
    "VOXEL_MM",
    "check_voxel_size",
    "load_nifti",
    "load_volume",
    "load_mask",
    "check_same_grid",
    "spacing_of",
]

# Two grids are "the same" when their affines agree to this many millimetres.
GRID_TOLERANCE_MM = 1e-3
# Voxel sizes an MRI has (mm): finer is a microscope, coarser is not an image of a brain. Scans and
# spacing options outside are refused before anything is allocated for them.
VOXEL_MM = (0.05, 20.0)


def check_voxel_size(sizes: float | np.ndarray, source: str | Path) -> None:
    """Refuse voxel sizes that are not finite or outside :data:`VOXEL_MM`.

    >>> check_voxel_size(1.0, "--spacing")
    >>> check_voxel_size(0.0, "--spacing")
    Traceback (most recent call last):
    runtime.errors.InputError: --spacing: voxel size 0 mm: an MRI voxel is 0.05 to 20 mm
    """
    values = np.atleast_1d(np.asarray(sizes, dtype=float))
    bad = values[~(np.isfinite(values) & (values >= VOXEL_MM[0]) & (values <= VOXEL_MM[1]))]
    if bad.size:
        shown = "x".join(f"{v:g}" for v in values)
        raise InputError(
            source, f"voxel size {shown} mm: an MRI voxel is {VOXEL_MM[0]:g} to {VOXEL_MM[1]:g} mm"
        )


def load_nifti(path: str | Path) -> nib.Nifti1Image:
    """Open a NIfTI file lazily and check it is one 3D volume (a trailing axis of 1 is dropped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        img = nib.load(str(path))
    except Exception as error:  # nibabel raises many types for corrupt files
        raise InputError(path, f"unreadable NIfTI ({type(error).__name__}: {error})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(path, f"not a NIfTI image ({type(img).__name__})")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        img = nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine, img.header)
    elif len(shape) != 3:
        raise InputError(
            path, f"is {len(shape)}D (shape {'x'.join(map(str, shape))}); expected one 3D volume"
        )
    if min(img.shape) < 1:
        raise InputError(path, "is empty (a zero-length axis)")
    if not np.all(np.isfinite(img.affine)):
        raise InputError(path, "has a non-finite affine")
    check_voxel_size(spacing_of(img.affine), path)
    return img


def _read_data(img: nib.Nifti1Image, path: Path) -> np.ndarray:
    try:
        return np.asarray(img.dataobj, dtype=np.float32)
    except Exception as error:
        raise InputError(path, f"unreadable voxel data ({type(error).__name__}: {error})") from None


def load_volume(path: str | Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Load an intensity image as float32; reject NaN/inf and constant images."""
    path = Path(path)
    img = load_nifti(path)
    data = _read_data(img, path)
    if not np.all(np.isfinite(data)):
        raise InputError(path, f"contains {int(np.sum(~np.isfinite(data)))} NaN or infinite voxels")
    if float(data.max()) == float(data.min()):
        raise InputError(path, f"is constant (every voxel is {float(data.min()):g})")
    return data, img


def load_mask(
    path: str | Path, kind: Literal["binary", "soft"] = "binary"
) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Load a lesion mask: ``binary`` must hold only 0 and 1 (returned as uint8);
    ``soft`` may hold values in [0, 1] (returned as float32)."""
    path = Path(path)
    img = load_nifti(path)
    if kind == "binary":
        try:
            raw = np.asanyarray(img.dataobj)  # native dtype: checking 0/1 there is ~40x faster
        except Exception as error:
            raise InputError(path, f"unreadable voxel data ({type(error).__name__}: {error})") from None
        if not ((raw == 0) | (raw == 1)).all():
            values = np.unique(raw[(raw != 0) & (raw != 1)])
            shown = ", ".join(f"{v:g}" for v in values[:6])
            raise InputError(path, f"mask is not binary (values {shown}{', ...' if len(values) > 6 else ''})")
        return (raw == 1).astype(np.uint8), img
    data = _read_data(img, path)
    if not np.all(np.isfinite(data)):
        raise InputError(path, "mask contains NaN or infinite voxels")
    if data.min() < 0 or data.max() > 1:
        raise InputError(path, f"soft mask outside [0, 1] (range {data.min():g} to {data.max():g})")
    return data, img


def check_same_grid(
    img: nib.Nifti1Image, reference: nib.Nifti1Image, path: str | Path, reference_path: str | Path
) -> None:
    """Raise unless ``img`` has the shape and affine of ``reference``."""
    if img.shape[:3] != reference.shape[:3]:
        raise InputError(
            path,
            f"grid {'x'.join(map(str, img.shape[:3]))} differs from {Path(reference_path).name} "
            f"({'x'.join(map(str, reference.shape[:3]))})",
        )
    worst = float(np.abs(img.affine - reference.affine).max())
    if worst > GRID_TOLERANCE_MM:
        raise InputError(path, f"affine differs from {Path(reference_path).name} by up to {worst:.3g} mm")


def spacing_of(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm) of an affine, one per array axis."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
