"""Per-case overview of a dataset: what ``slicer cases`` and the demo print first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from runtime.lesions import count_lesions
from slicer.datasets import load_dataset
from slicer.io import load_mask, spacing_of

__all__ = ["case_table"]


def case_table(name: str, root: str | Path | None = None, registry: str | Path | None = None) -> pd.DataFrame:
    """One row per case: id, scanner, split, number of new lesions and new-lesion voxels (consensus)."""
    rows = []
    for case in tqdm(load_dataset(name, root, registry), desc=f"reading {name}", unit="case", leave=False):
        row = {
            "case": case.id,
            "scanner": case.scanner,
            "split": case.split or "-",
            "new_lesions": 0,
            "voxels": 0,
        }
        if case.consensus is not None:
            mask, img = load_mask(case.consensus)
            row["new_lesions"] = count_lesions(mask, spacing_of(img.affine))
            row["voxels"] = int(np.count_nonzero(mask))
        rows.append(row)
    return pd.DataFrame(rows)
