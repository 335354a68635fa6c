"""The export's slice manifest: one definition of its columns, one reader.

``manifest.csv`` (and each case's ``cases/<case>.csv``) has one row per exported slice.
Case ids and stems are strings, whatever they look like: MSSEG-2's ids are ``013``,
``015``..., which a plain ``pandas.read_csv`` would turn into the integers 13 and 15.

>>> import io
>>> table = read_manifest(io.StringIO("stem,case,split,orientation,index,height,width\\n"
...                                   "013_axial_000,013,val,axial,0,4,4\\n"), "manifest.csv")
>>> table["case"].tolist()
['013']
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import pandas as pd

from runtime.errors import InputError
from slicer.geometry import ORIENTATIONS

__all__ = ["MANIFEST_COLUMNS", "REQUIRED_COLUMNS", "read_manifest", "empty_manifest"]

MANIFEST_COLUMNS = (
    "stem",
    "case",
    "split",
    "orientation",
    "index",
    "height",
    "width",
    "crop",
    "lesion_pixels",
    "instances",
)
# What a consumer needs to put every slice back (the other columns are statistics).
REQUIRED_COLUMNS = MANIFEST_COLUMNS[:7]
_TEXT = {"stem": str, "case": str, "split": str, "orientation": str, "crop": str}


def empty_manifest() -> pd.DataFrame:
    return pd.DataFrame(columns=list(MANIFEST_COLUMNS))


def read_manifest(source: str | Path | IO[str], name: str | Path | None = None) -> pd.DataFrame:
    """A manifest CSV with its text columns as strings, checked for the columns fusion needs.

    Args:
        source: the CSV file (or an open text stream).
        name: what error messages call it (default: ``source``).
    """
    name = name if name is not None else source
    if isinstance(source, str | Path) and not Path(source).is_file():
        raise InputError(name, "manifest not found (is this a slicer export folder?)")
    try:
        manifest = pd.read_csv(source, dtype=_TEXT, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise InputError(name, f"unreadable manifest ({type(error).__name__})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise InputError(name, f"manifest lacks column(s) {', '.join(missing)}")
    unknown = sorted(set(manifest["orientation"]) - set(ORIENTATIONS))
    if unknown:
        raise InputError(name, f"unknown orientation(s) {', '.join(map(str, unknown))}")
    return manifest
