"""What one ``reassemble --preds`` entry is, and the views it gives for a case.

Three kinds of folder, told apart by what they hold:

- a folder of probability PNGs (``unext-long predict``, ``yolo-long predict``): one view per
  plane (:func:`fusion.views.read_views`);
- an nnU-Net prediction folder (``nnUNetv2_predict``, with or without
  ``--save_probabilities``): one 3D view (:func:`fusion.volumes.read_nnunet_view`);
- a trained nnU-Net model folder: loaded once, then run on each case's exported volumes,
  one 3D view (:class:`fusion.volumes.NnUNetModel`).

A 3D view votes as one more voter under the orientation :data:`fusion.voting.VOLUME`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fusion.volumes import (
    NNUNET_THRESHOLD,
    NnUNetModel,
    check_nnunet_predictions,
    is_nnunet_model,
    is_nnunet_prediction,
    load_nnunet_model,
    read_nnunet_view,
)
from fusion.voting import VOLUME
from runtime.errors import InputError
from slicer.geometry import CaseGeometry
from slicer.writer import read_source_volume, source_channel

__all__ = ["PredictionSource", "open_source", "export_volumes"]

# Reads one case's PNG views: (manifest rows, geometry, folder, listing) -> {plane: volume}.
PngReader = Callable[[pd.DataFrame, CaseGeometry, Path, set[str]], dict[str, np.ndarray]]


@dataclass
class PredictionSource:
    """One ``--preds`` entry: PNGs (``listing``), nnU-Net predictions, or an nnU-Net ``model``."""

    folder: Path
    listing: set[str] | None = None
    model: NnUNetModel | None = None

    @property
    def volumetric(self) -> bool:
        return self.listing is None

    @property
    def default_threshold(self) -> float | None:
        """nnU-Net's own operating point; None: the folder's provenance says (PNG folders)."""
        return NNUNET_THRESHOLD if self.volumetric else None

    def check(
        self, manifest: pd.DataFrame, geometries: Mapping[str, CaseGeometry], fill_missing: bool = False
    ) -> int:
        """Refuse, before anything is written, a source without predictions for some case, or
        without some slice of the planes it votes over, unless ``fill_missing`` (those slices
        are then read as background). Returns how many slices are missing."""
        if self.model is not None:
            return 0
        if self.listing is None:
            check_nnunet_predictions(self.folder, geometries)
            return 0
        rows = manifest[manifest["case"].isin(list(geometries))]
        present = (rows["stem"] + ".png").isin(self.listing)
        for case in geometries:
            if not present[rows["case"] == case].any():
                raise InputError(self.folder, f"no prediction for case '{case}'")
        missing = rows[~present]
        if not missing.empty and not fill_missing:
            counts = missing.groupby("orientation").size()
            totals = rows.groupby("orientation").size()
            shown = ", ".join(f"{plane} {counts[plane]} of {totals[plane]}" for plane in counts.index)
            raise InputError(
                self.folder,
                f"{len(missing)} slices have no prediction ({shown}; e.g. {missing['stem'].iloc[0]}.png): "
                "predict them, or pass --fill-missing to read them as background",
            )
        return len(missing)

    def views(
        self, rows: pd.DataFrame, geometry: CaseGeometry, export: Path, read_pngs: PngReader
    ) -> dict[str, np.ndarray]:
        """This source's views of one case, by plane (``"3d"`` for a volumetric one)."""
        case = str(rows["case"].iloc[0])
        if self.listing is not None:
            return read_pngs(rows, geometry, self.folder, self.listing)
        if self.model is None:
            return {VOLUME: read_nnunet_view(self.folder, case, geometry)}
        volumes = export_volumes(export, rows, geometry, self.model.sources)
        if volumes is None:
            raise InputError(
                export / "cases" / f"{case}.json", f"slices lack the {self.model.sources} channels"
            )
        return {VOLUME: self.model.predict(geometry, volumes)}


def open_source(folder: str | Path, device: str = "cpu") -> PredictionSource:
    """Tell a ``--preds`` folder's kind and open it (an nnU-Net model is loaded here, once)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "prediction folder not found")
    if is_nnunet_model(folder):
        return PredictionSource(folder, model=load_nnunet_model(folder, device))
    if is_nnunet_prediction(folder):
        return PredictionSource(folder)
    return PredictionSource(folder, listing=set(os.listdir(folder)))


def export_volumes(
    export: Path, rows: pd.DataFrame, geometry: CaseGeometry, sources: Sequence[str]
) -> dict[str, np.ndarray] | None:
    """The case's export-grid uint8 volumes of ``sources`` (t0, t1, diff) from its slices'
    centre channels; None when the slices lack one."""
    recipe, context = geometry.extra.get("recipe") or [], int(geometry.extra.get("context", 0))
    channels = {source: source_channel(recipe, context, source) for source in sources}
    if None in channels.values():
        return None
    return {source: read_source_volume(export, rows, geometry.shape, ch) for source, ch in channels.items()}
