"""Writing outputs safely: the one output policy every command follows.

- **An output is never an input.** :func:`check_output` refuses, before any work, an output
  path that is one of the command's inputs (the same path, or the same file through links).
- **Case ids become file names only when they are plain names** (:func:`plain_name`): no
  separator, no ``..``, not empty, so no output lands outside the folder the user named.
- **Nothing half-written.** Every file goes to a temporary name beside it and is renamed
  into place (:func:`atomic_path`, :func:`atomic_dir`); the temporary file is gone after any
  failure or interrupt. A failed write (disk full, read-only folder) ends the command with one
  line naming the path (:func:`runtime.errors.exit_on_input_error`).
- **Existing outputs are never replaced silently.** A one-file output that exists is refused
  unless ``--overwrite`` (:func:`check_output`); a folder of outputs keeps the finished files
  made by the same model and settings, so a re-run is cheap, and refuses other ones unless
  ``--overwrite`` (:func:`runtime.provenance.claim_folder`).

The temporary name keeps the full file name as suffix, so libraries that pick the format from
the extension (nibabel and ``.nii.gz``) still write the right one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from runtime.errors import InputError

__all__ = [
    "atomic_path",
    "atomic_dir",
    "save_nifti",
    "check_output",
    "check_fresh",
    "check_not_input",
    "same_file",
    "check_writable",
    "plain_name",
    "sibling_path",
    "new_folders",
]


def plain_name(name: str, source: str | Path) -> str:
    """``name`` when it can be a file name inside an output folder; else :class:`InputError`.

    >>> plain_name("patient01", "pairs.csv")
    'patient01'
    >>> plain_name("../x", "pairs.csv row 3")
    Traceback (most recent call last):
    runtime.errors.InputError: pairs.csv row 3: case id '../x' is not a plain name (no '/', '\\', '..' or empty id)
    """
    if not name or name == "." or ".." in name or any(mark in name for mark in ("/", "\\", "\0")):
        raise InputError(source, f"case id {name!r} is not a plain name (no '/', '\\', '..' or empty id)")
    return name


@contextmanager
def new_folders(folders: Sequence[str | Path]) -> Iterator[None]:
    """Make ``folders`` (parents first); if the block fails, remove those this call created
    that are still empty, so that a refused run leaves no empty output tree behind."""
    paths = [Path(folder) for folder in folders]
    chain = sorted({p for path in paths for p in (path, *path.parents)}, key=lambda p: len(p.parts))
    created = [p for p in chain if not p.exists()]
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for path in reversed(created):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise


def same_file(a: str | Path, b: str | Path) -> bool:
    """The same path, or the same file through links (both existing)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(path: str | Path, option: str, inputs: Sequence[str | Path | None]) -> None:
    """Refuse an output that is one of ``inputs`` (the same path, or the same file through links)."""
    for source in inputs:
        if source is not None and same_file(path, source):
            raise InputError(option, f"{path} is also an input ({source}): an output never replaces an input")


def check_writable(path: str | Path, option: str) -> None:
    """Refuse, before any work, an output whose folder cannot take files (read-only, not a folder)."""
    path = Path(path)
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(option, f"{path} cannot be written: {ancestor} is not a folder")
    try:
        with open(_temporary_sibling(ancestor / "probe"), "x") as probe:
            os.unlink(probe.name)
    except OSError as error:
        raise InputError(option, f"{path} cannot be written: {ancestor}: {error.strerror}") from None


def check_output(
    path: str | Path,
    option: str,
    inputs: Sequence[str | Path | None] = (),
    overwrite: bool = False,
    suffixes: tuple[str, ...] = (),
) -> Path:
    """Check a one-file output before any work: never an input, not a folder, of a known
    format, writable, and replacing an existing file only with ``overwrite``."""
    path = Path(path)
    check_not_input(path, option, inputs)
    if path.is_dir():
        raise InputError(option, f"{path} is a folder; give a file name")
    if suffixes and not path.name.endswith(suffixes):
        raise InputError(option, f"{path}: name it {' or '.join(suffixes)} (the format follows the name)")
    check_fresh([path], option, overwrite)
    return path


def check_fresh(outputs: Sequence[str | Path], option: str, overwrite: bool) -> None:
    """Refuse outputs that exist unless ``overwrite``, and outputs whose folder takes no file."""
    existing = [str(path) for path in outputs if Path(path).exists()]
    if existing and not overwrite:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise InputError(option, f"{shown} exist(s); pass --overwrite to replace")
    for path in {Path(p).parent: p for p in outputs}.values():  # one probe per folder
        check_writable(path, option)


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


def sibling_path(out: Path, suffix: str) -> Path:
    """``seg.nii.gz`` -> ``seg<suffix>`` beside it (e.g. ``seg_lesions.csv``)."""
    name = Path(out).name.removesuffix(".gz").removesuffix(".nii")
    return Path(out).with_name(f"{name}{suffix}")
