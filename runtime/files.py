"""Writing outputs safely: every file goes to a temporary name beside it and is renamed into place.

An interrupted or failed run therefore leaves nothing half-written, and a reader never sees
a partial file. The temporary name keeps the full file name as suffix, so libraries that
pick the format from the extension (nibabel and ``.nii.gz``) still write the right one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["atomic_path", "atomic_dir", "save_nifti"]


def _temporary_sibling(path: Path) -> Path:
    # Keep the full name as suffix: nibabel picks the format from ".nii.gz".
    return path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path that replaces ``path`` only if the block succeeds.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> with atomic_path(Path(folder.name) / "out" / "seg.nii.gz") as tmp:
    ...     nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), tmp)
    ...     print(tmp.name.startswith(".tmp-"))
    True
    >>> [path.name for path in (Path(folder.name) / "out").iterdir()]
    ['seg.nii.gz']
    >>> folder.cleanup()
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` (whole) only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def save_nifti(
    data: np.ndarray, affine: np.ndarray, path: str | Path, header: nib.Nifti1Header | None = None
) -> Path:
    """Write ``data`` atomically as NIfTI with ``affine`` (and the reference header's metadata)."""
    path = Path(path)
    img = nib.Nifti1Image(np.asarray(data), affine, header=header.copy() if header is not None else None)
    img.set_data_dtype(np.asarray(data).dtype)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
