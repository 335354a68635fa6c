"""nnU-Net volumes as views: one 3D probability volume per case, on that case's export grid.

Two sources, told apart by :func:`is_nnunet_prediction` and :func:`is_nnunet_model`:

- a **prediction folder** written by ``nnUNetv2_predict`` on a raw dataset of ``slicer export-nnunet``
  (or a trained fold's ``validation/``, with ``--npz`` for probabilities):
  ``<case>.nii.gz`` (the segmentation, on the follow-up's original grid) and, with
  ``--save_probabilities``, ``<case>.npz`` (the class probabilities). :func:`read_nnunet_view` takes
  the new-lesion probability from the ``.npz`` (1 - background), else the segmentation itself, and
  maps it onto the export grid (:meth:`slicer.geometry.CaseGeometry.to_export`). Cases and grids are
  checked against the export first (:func:`check_nnunet_predictions`): a folder predicted from
  another dataset, or from scans on other grids, is refused before anything is written.
- a **trained model folder** (``nnUNet_results/Dataset501_<name>/<trainer>__<plans>__<configuration>``,
  with ``fold_<k>/checkpoint_final.pth``): :func:`load_nnunet_model` loads nnU-Net's own predictor
  once, in this process, and :meth:`NnUNetModel.predict` runs it on a case's volumes, in memory.
  The input channels are rebuilt exactly as ``slicer export-nnunet`` wrote them
  (:func:`slicer.nnunet.channels_on_original` of the export-grid uint8 volumes ``t0``, ``t1``,
  ``diff``), so a model runs alike on a 2D export's cases (``reassemble``) and on one patient
  prepared in memory (``mslong segment``), with no raw files, subprocess or environment variable.

In the vote the view's orientation is :data:`fusion.voting.VOLUME` (``"3d"``); its operating point
is nnU-Net's own, 0.5 (the argmax of two classes).

A folder shaped like ``nnUNetv2_predict``'s (here the ground truth as the segmentation):

>>> import shutil, tempfile
>>> from slicer.export import ExportOptions, export_dataset
>>> from simulation.phantom import write_phantom
>>> tmp = tempfile.TemporaryDirectory(); root = Path(tmp.name)
>>> _ = write_phantom(root / "phantom", cases=1, voxel=4.0)
>>> _ = export_dataset(ExportOptions(dataset="phantom", root=root / "phantom", out=root / "export", spacing=4.0))
>>> (root / "nnunet_preds").mkdir()
>>> _ = shutil.copy(root / "phantom" / "case000" / "ground_truth.nii.gz", root / "nnunet_preds" / "case000.nii.gz")
>>> geometry = CaseGeometry.load(root / "export" / "cases" / "case000.json")
>>> view = read_nnunet_view(root / "nnunet_preds", "case000", geometry)
>>> view.shape == geometry.shape, view.dtype, float(view.max())
(True, dtype('float32'), 1.0)
>>> tmp.cleanup()
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import InputError
from slicer.geometry import CaseGeometry
from slicer.io import GRID_TOLERANCE_MM, load_nifti, spacing_of
from slicer.nnunet import FILE_ENDING, NNUNET_SOURCES, channels_on_original

__all__ = [
    "NNUNET_THRESHOLD",
    "NnUNetModel",
    "is_nnunet_folder",
    "is_nnunet_prediction",
    "is_nnunet_model",
    "check_nnunet_predictions",
    "read_nnunet_view",
    "load_nnunet_model",
]

NNUNET_THRESHOLD = 0.5  # nnU-Net's own decision for two classes: the argmax
# Files nnU-Net writes beside its predictions: nnUNetv2_predict's arguments and plans, and the
# scores of a training fold's validation/ folder (fold 0: our validation cases).
_PREDICTION_MARKERS = ("predict_from_raw_data_args.json", "plans.json", "summary.json")
# Readers whose arrays are not the file's own axes reversed (SimpleITK's order): refused.
_REORIENTING_READERS = ("NibabelIOWithReorient",)


def is_nnunet_prediction(path: str | Path) -> bool:
    """A folder of nnU-Net predictions: ``<case>.nii.gz`` beside the records nnU-Net writes with them."""
    path = Path(path)
    return (
        path.is_dir()
        and any((path / marker).is_file() for marker in _PREDICTION_MARKERS)
        and any(path.glob(f"*{FILE_ENDING}"))
    )


def is_nnunet_model(path: str | Path) -> bool:
    """A trained nnU-Net model folder: ``plans.json``, ``dataset.json`` and ``fold_*/checkpoint_*.pth``."""
    path = Path(path)
    return (
        (path / "plans.json").is_file()
        and (path / "dataset.json").is_file()
        and any(path.glob("fold_*/checkpoint_*.pth"))
    )


def is_nnunet_folder(path: str | Path) -> bool:
    """Either source of an nnU-Net view (a model folder is checked first: it also holds plans.json)."""
    return is_nnunet_model(path) or is_nnunet_prediction(path)


def _check_grid(
    path: Path, shape: tuple[int, ...], affine: np.ndarray | None, geometry: CaseGeometry
) -> None:
    expected = tuple(geometry.original_shape)
    if tuple(shape) != expected:
        raise InputError(
            path,
            f"grid {'x'.join(map(str, shape))} is not the case's follow-up grid {'x'.join(map(str, expected))} "
            "(predicted from another export?)",
        )
    if affine is not None:
        worst = float(np.abs(np.asarray(affine) - np.asarray(geometry.original_affine)).max())
        if worst > GRID_TOLERANCE_MM:
            raise InputError(path, f"affine differs from the case's follow-up by up to {worst:.3g} mm")


def _check_reader(folder: Path) -> None:
    dataset = folder / "dataset.json"
    reader = (
        json.loads(dataset.read_text()).get("overwrite_image_reader_writer") if dataset.is_file() else None
    )
    if reader in _REORIENTING_READERS:
        raise InputError(
            dataset, f"predictions read with {reader} are reoriented; export with the default reader"
        )


def check_nnunet_predictions(folder: str | Path, geometries: Mapping[str, CaseGeometry]) -> None:
    """Refuse a prediction folder that lacks a case of ``geometries`` or holds one on another grid.

    Reads headers only, so a caller can check every case before writing anything.
    """
    folder = Path(folder)
    _check_reader(folder)
    missing = sorted(case for case in geometries if not (folder / f"{case}{FILE_ENDING}").is_file())
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise InputError(folder, f"no nnU-Net prediction for case(s) {shown} of the export")
    for case, geometry in geometries.items():
        path = folder / f"{case}{FILE_ENDING}"
        img = load_nifti(path)
        _check_grid(path, img.shape, img.affine, geometry)


def _foreground(npz: Path, geometry: CaseGeometry) -> np.ndarray:
    """New-lesion probability on the original grid from nnU-Net's (classes, z, y, x) probabilities."""
    try:
        probabilities = np.load(npz)["probabilities"]
    except (OSError, KeyError, ValueError) as error:
        raise InputError(npz, f"not nnU-Net probabilities ({type(error).__name__}: {error})") from None
    if probabilities.ndim != 4 or probabilities.shape[0] < 2:
        raise InputError(npz, f"probabilities of shape {probabilities.shape}; expected (classes, z, y, x)")
    # nnU-Net's arrays are the file's axes reversed (SimpleITK's order).
    foreground = (1.0 - probabilities[0]).transpose(2, 1, 0)
    _check_grid(npz, foreground.shape, None, geometry)
    return np.clip(foreground, 0.0, 1.0).astype(np.float32)


def read_nnunet_view(folder: str | Path, case: str, geometry: CaseGeometry) -> np.ndarray:
    """One case of an nnU-Net prediction folder as a float32 [0, 1] volume on the export grid."""
    folder = Path(folder)
    check_nnunet_predictions(folder, {case: geometry})
    npz = folder / f"{case}.npz"
    if npz.is_file():
        return np.clip(geometry.to_export(_foreground(npz, geometry), order=1), 0.0, 1.0)
    segmentation = np.asarray(load_nifti(folder / f"{case}{FILE_ENDING}").dataobj) > 0
    return geometry.to_export(segmentation.astype(np.float32), order=0)


@dataclass
class NnUNetModel:
    """A trained nnU-Net loaded once; :meth:`predict` gives one case's view."""

    folder: Path
    sources: tuple[str, ...]  # the input channels, in order (from its dataset.json)
    predictor: Any  # nnunetv2.inference.predict_from_raw_data.nnUNetPredictor

    def predict(self, geometry: CaseGeometry, volumes: Mapping[str, np.ndarray]) -> np.ndarray:
        """The new-lesion probability (float32, export grid) from a case's export-grid uint8 ``volumes``."""
        channels = channels_on_original(geometry, volumes, self.sources)
        image = np.stack(channels).astype(np.float32).transpose(0, 3, 2, 1)  # nnU-Net's (c, z, y, x)
        spacing = spacing_of(np.asarray(geometry.original_affine))[::-1]
        _, probabilities = self.predictor.predict_single_npy_array(
            image, {"spacing": [float(s) for s in spacing]}, None, None, True
        )
        foreground = (1.0 - np.asarray(probabilities[0], np.float32)).transpose(2, 1, 0)
        return np.clip(geometry.to_export(foreground, order=1), 0.0, 1.0)


def _model_sources(folder: Path) -> tuple[str, ...]:
    names = json.loads((folder / "dataset.json").read_text()).get("channel_names", {})
    sources = tuple(names[key] for key in sorted(names, key=int))
    if not sources or not set(sources) <= set(NNUNET_SOURCES):
        raise InputError(
            folder / "dataset.json",
            f"channels {list(sources)} are not those of slicer export-nnunet ({', '.join(NNUNET_SOURCES)})",
        )
    return sources


def load_nnunet_model(
    folder: str | Path,
    device: str = "cpu",
    folds: Sequence[int | str] | None = None,
    checkpoint: str = "checkpoint_final.pth",
    mirroring: bool = True,
) -> NnUNetModel:
    """nnU-Net's own predictor for a trained model folder (``folds``: None for every fold found).

    ``mirroring`` is nnU-Net's test-time augmentation (its default; off: ``--disable_tta``, about
    eight times faster in 3D).
    """
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    folder = Path(folder)
    if not is_nnunet_model(folder):
        raise InputError(folder, "not a trained nnU-Net model folder (plans.json, dataset.json, fold_*/)")
    sources = _model_sources(folder)
    predictor = nnUNetPredictor(
        use_mirroring=mirroring,
        perform_everything_on_device=device.startswith("cuda"),  # it refuses (and says so) elsewhere
        device=torch.device(device),
        verbose=False,
        allow_tqdm=False,
    )
    try:
        predictor.initialize_from_trained_model_folder(
            str(folder), None if folds is None else tuple(folds), checkpoint_name=checkpoint
        )
    except (FileNotFoundError, KeyError, RuntimeError) as error:
        raise InputError(folder, f"cannot load the nnU-Net model ({type(error).__name__}: {error})") from None
    return NnUNetModel(folder, sources, predictor)
