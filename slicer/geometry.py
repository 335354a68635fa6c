"""Case geometry: the exact way from a scan's original grid to the export grid and back.

The export grid is the follow-up scan (t1) made canonical (RAS: array axes x, y, z =
sagittal, coronal, axial), resampled to an isotropic spacing with the first voxel centres
kept aligned, then cropped to the head. :class:`CaseGeometry` holds everything needed for
both directions and is saved as ``cases/<case>.json`` by the export; fusion reads it back
to put predictions into the original t1 grid.

The round trip is exact for masks whenever the export spacing is not coarser than the
scan's own spacing along any axis (the usual case: 1 mm export of 1-3 mm scans): with
nearest-neighbour sampling both ways, every original voxel centre finds an export voxel
within half an export voxel, and that export voxel was itself sampled from it.

>>> import numpy as np
>>> geometry = CaseGeometry.from_affine((40, 48, 20), np.diag([1.5, 1.5, 3.0, 1.0]), spacing=1.0)
>>> geometry.resampled_shape
(60, 72, 60)
>>> mask = np.zeros((40, 48, 20), np.uint8); mask[10:14, 20:22, 5] = 1
>>> bool((geometry.to_original(geometry.to_export(mask, order=0), order=0) == mask).all())
True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel import orientations
from scipy import ndimage

from runtime.errors import InputError
from runtime.files import atomic_path
from slicer.io import spacing_of

__all__ = [
    "CaseGeometry",
    "ORIENTATIONS",
    "AXIS_OF",
    "to_canonical_array",
    "slice_image",
    "volume_from_images",
]

# Axis names after canonicalisation (RAS): sagittal slices cut x, coronal y, axial z.
ORIENTATIONS = ("axial", "coronal", "sagittal")
AXIS_OF = {"sagittal": 0, "coronal": 1, "axial": 2}


def slice_image(volume: np.ndarray, orientation: str, index: int) -> np.ndarray:
    """The 2D image of slice ``index`` of a RAS volume, as a viewer shows it.

    It is ``np.rot90`` of the array plane: superior (axial slices: anterior) at the top,
    columns in the direction of growing x (sagittal: y), i.e. neurological convention.
    Trailing axes (channels) are carried along. :func:`volume_from_images` is the exact
    inverse.
    """
    return np.rot90(np.take(volume, index, axis=AXIS_OF[orientation]))


def volume_from_images(
    images: dict[int, np.ndarray],
    orientation: str,
    shape: tuple[int, int, int],
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Stack 2D slice images back into a volume of ``shape``; missing slices stay zero."""
    axis = AXIS_OF[orientation]
    volume = np.zeros(shape, dtype=dtype)
    moved = np.moveaxis(volume, axis, 0)  # a view: writing into it fills ``volume``
    for index, image in images.items():
        moved[index] = np.rot90(image, k=-1)
    return volume


def to_canonical_array(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder and flip array axes to RAS; returns the array and its new affine."""
    ornt = orientations.io_orientation(affine)
    canonical = orientations.apply_orientation(data, ornt)
    new_affine = affine @ orientations.inv_ornt_aff(ornt, data.shape[:3])
    return canonical, new_affine


@dataclass(frozen=True)
class CaseGeometry:
    """Everything needed to map volumes between a scan's original grid and the export grid.

    Attributes:
        original_shape: array shape of the t1 scan as stored on disk.
        original_affine: its voxel-to-world affine (4x4, mm).
        ornt: nibabel orientation transform from the original axes to RAS.
        canonical_spacing: voxel sizes (mm) after canonicalisation, per RAS axis.
        spacing: isotropic export spacing (mm).
        resampled_shape: shape of the canonical volume after resampling (before cropping).
        crop: ``[start, stop)`` per axis of the resampled volume that the export keeps.
        extra: free-form provenance (registration transform, source files...), saved as is.
    """

    original_shape: tuple[int, int, int]
    original_affine: tuple[tuple[float, ...], ...]
    ornt: tuple[tuple[float, float], ...]
    canonical_spacing: tuple[float, float, float]
    spacing: float
    resampled_shape: tuple[int, int, int]
    crop: tuple[tuple[int, int], ...]
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_affine(cls, shape: tuple[int, ...], affine: np.ndarray, spacing: float = 1.0) -> CaseGeometry:
        """Geometry of a scan of ``shape`` and ``affine``, exported at ``spacing`` mm, uncropped."""
        shape3 = tuple(int(s) for s in shape[:3])
        ornt = orientations.io_orientation(affine)
        canonical_shape = tuple(int(s) for s in np.asarray(shape3)[ornt[:, 0].astype(int).argsort()])
        canonical_affine = np.asarray(affine) @ orientations.inv_ornt_aff(ornt, shape3)
        canonical_spacing = spacing_of(canonical_affine)
        resampled = tuple(
            max(1, round(n * s / spacing)) for n, s in zip(canonical_shape, canonical_spacing, strict=True)
        )
        return cls(
            original_shape=shape3,  # type: ignore[arg-type]
            original_affine=tuple(tuple(float(v) for v in row) for row in np.asarray(affine)),
            ornt=tuple((float(a), float(b)) for a, b in ornt),
            canonical_spacing=tuple(float(s) for s in canonical_spacing),  # type: ignore[arg-type]
            spacing=float(spacing),
            resampled_shape=resampled,  # type: ignore[arg-type]
            crop=tuple((0, n) for n in resampled),
        )

    @classmethod
    def from_image(cls, img: nib.Nifti1Image, spacing: float = 1.0) -> CaseGeometry:
        return cls.from_affine(img.shape, img.affine, spacing)

    def with_crop(self, crop: np.ndarray | tuple[tuple[int, int], ...]) -> CaseGeometry:
        crop = tuple((int(a), int(b)) for a, b in np.asarray(crop).reshape(3, 2))
        for (start, stop), n in zip(crop, self.resampled_shape, strict=True):
            if not 0 <= start < stop <= n:
                raise ValueError(f"crop {crop} outside the resampled shape {self.resampled_shape}")
        return replace(self, crop=crop)

    def with_extra(self, **items: Any) -> CaseGeometry:
        return replace(self, extra={**self.extra, **items})

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the export grid (after cropping)."""
        return tuple(stop - start for start, stop in self.crop)  # type: ignore[return-value]

    @property
    def _ornt(self) -> np.ndarray:
        return np.asarray(self.ornt, dtype=float)

    @property
    def canonical_affine(self) -> np.ndarray:
        return np.asarray(self.original_affine) @ orientations.inv_ornt_aff(self._ornt, self.original_shape)

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in np.asarray(self.original_shape)[self._ornt[:, 0].astype(int).argsort()])  # type: ignore[return-value]

    @property
    def _scale(self) -> np.ndarray:
        """Canonical voxel index per export voxel index, per axis."""
        return self.spacing / np.asarray(self.canonical_spacing)

    @property
    def export_affine(self) -> np.ndarray:
        """Voxel-to-world affine of the (cropped) export grid."""
        start = np.array([a for a, _ in self.crop], dtype=float)
        resampled = self.canonical_affine @ np.diag([*self._scale, 1.0])
        shift = np.eye(4)
        shift[:3, 3] = start
        return resampled @ shift

    @property
    def is_exactly_invertible(self) -> bool:
        """True when masks survive the round trip voxel for voxel (export spacing not coarser)."""
        return bool(np.all(np.asarray(self.canonical_spacing) >= self.spacing - 1e-6))

    # ------------------------------------------------------------------- mapping
    def to_export(self, volume: np.ndarray, order: int = 1) -> np.ndarray:
        """Map a volume on the original grid to the (cropped) export grid.

        ``order`` is the interpolation order: 0 for masks and labels, 1 for images. Images
        are low-pass filtered first along every axis the export samples more coarsely than
        the scan (a Gaussian of ``(factor - 1) / 2`` voxels, as scikit-image's ``resize``
        does), so that a 0.5 mm in-plane scan exported at 1 mm does not alias.
        """
        if tuple(volume.shape) != self.original_shape:
            raise ValueError(f"volume shape {volume.shape} is not the original shape {self.original_shape}")
        canonical = orientations.apply_orientation(volume, self._ornt)
        sigma = np.maximum(self._scale - 1.0, 0.0) / 2.0
        if order > 0 and sigma.any():
            canonical = ndimage.gaussian_filter(canonical.astype(np.float32), sigma, mode="nearest")
        start = np.array([a for a, _ in self.crop], dtype=float)
        return ndimage.affine_transform(
            canonical,
            self._scale,
            offset=start * self._scale,
            output_shape=self.shape,
            order=order,
            mode="nearest",
            prefilter=False,
        )

    def to_original(self, volume: np.ndarray, order: int = 0) -> np.ndarray:
        """Map a volume on the export grid back to the scan's original grid (zero outside the crop)."""
        if tuple(volume.shape) != self.shape:
            raise ValueError(f"volume shape {volume.shape} is not the export shape {self.shape}")
        full = np.zeros(self.resampled_shape, dtype=volume.dtype)
        full[tuple(slice(a, b) for a, b in self.crop)] = volume
        canonical = ndimage.affine_transform(
            full,
            1.0 / self._scale,
            output_shape=self.canonical_shape,
            order=order,
            mode="nearest",
            prefilter=False,
        )
        inverse = orientations.ornt_transform(orientations.axcodes2ornt("RAS"), self._ornt)
        return orientations.apply_orientation(canonical, inverse)

    # ----------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseGeometry:
        return cls(
            original_shape=tuple(data["original_shape"]),
            original_affine=tuple(tuple(row) for row in data["original_affine"]),
            ornt=tuple(tuple(row) for row in data["ornt"]),
            canonical_spacing=tuple(data["canonical_spacing"]),
            spacing=float(data["spacing"]),
            resampled_shape=tuple(data["resampled_shape"]),
            crop=tuple(tuple(pair) for pair in data["crop"]),
            extra=dict(data.get("extra", {})),
        )

    def save(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> CaseGeometry:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise InputError(path, "case geometry file not found") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise InputError(path, f"broken case geometry ({type(error).__name__}: {error})") from None
