"""From per-slice probability PNGs back to one new-lesion mask per case, in the t1 grid.

Layers, lowest first: :func:`read_views` (one case's PNGs -> probability volumes on the
export grid), :func:`reassemble_case` (views -> fused mask, without the lesions already
there at baseline (:mod:`fusion.existing`), and probability in the original grid, in
memory; what the one-patient command uses), :func:`reassemble` (a whole export folder,
written as ``<case>.nii.gz``). The slice <-> volume relation is the export contract's:
:func:`slicer.geometry.volume_from_images`; the baseline and follow-up volumes that rule
needs are read back from the exported images' t0 and t1 channels.

An export's own mask PNGs, reassembled, give back the ground truth (the round trip is exact):

>>> import tempfile
>>> from slicer.export import ExportOptions, export_dataset
>>> from simulation.phantom import write_phantom
>>> tmp = tempfile.TemporaryDirectory(); root = Path(tmp.name)
>>> _ = write_phantom(root / "phantom", cases=2, voxel=4.0)
>>> _ = export_dataset(ExportOptions(dataset="phantom", root=root / "phantom", out=root / "export",
...                                  spacing=4.0, val_fraction=0.5))
>>> written = reassemble(ReassembleOptions(slices=root / "export", preds=[root / "export" / "masks" / "val"],
...                                        out=root / "seg", split="val"))
>>> sorted(path.name for path in (root / "seg").iterdir())
['case000.nii.gz', 'provenance.json']
>>> truth = nib.load(root / "phantom" / "case000" / "ground_truth.nii.gz").get_fdata()
>>> bool((nib.load(written[0]).get_fdata() == truth).all())
True
>>> tmp.cleanup()
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from fusion.existing import drop_existing_lesions
from fusion.sources import PredictionSource, export_volumes, open_source
from fusion.voting import VOLUME, Vote, check_min_votes, fuse_views, operating_level
from runtime.cluster import ClusterOptions, Shard, run_array, shard_of
from runtime.devices import select_device
from runtime.errors import InputError
from runtime.files import check_not_input, save_nifti
from runtime.lesions import MIN_LESION_MM3, remove_small_lesions
from runtime.predictions import decode_probability
from runtime.provenance import claim_folder, operating_point, read_provenance
from slicer.geometry import AXIS_OF, ORIENTATIONS, CaseGeometry, slice_image, volume_from_images
from slicer.io import spacing_of
from slicer.manifest import read_manifest
from slicer.writer import read_roi

__all__ = [
    "Thresholds",
    "ReassembleOptions",
    "read_probability_png",
    "read_views",
    "read_baseline",
    "folder_thresholds",
    "reassemble_case",
    "reassemble",
]

READ_THREADS = 4  # PNG decoding releases the GIL; a few threads hide the file system latency
# The operating point of a prediction folder that does not say which model made it.
DEFAULT_THRESHOLD = 0.5
Thresholds = float | Sequence[float]


@dataclass
class ReassembleOptions:
    """Everything ``reassemble`` needs (the CLI fills it from its flags)."""

    slices: Path | str
    preds: Sequence[Path | str]
    out: Path | str
    vote: Vote = "triplanar"
    min_votes: int | None = None  # None: half the views, rounded up (fusion.voting.default_min_votes)
    # One probability threshold for every folder, or one per folder of ``preds``; None: each
    # folder's operating point from its provenance (runtime.provenance.operating_point).
    threshold: Thresholds | None = None
    min_size_mm3: float = MIN_LESION_MM3
    # Keep lesions already hyperintense at baseline (default: drop them, see fusion.existing).
    keep_existing: bool = False
    save_prob: bool = False
    cases: Sequence[str] = field(default_factory=tuple)
    split: str | None = None
    orientations: Sequence[str] = ORIENTATIONS
    overwrite: bool = False
    # Where a trained nnU-Net model folder among ``preds`` runs (runtime.devices.select_device).
    device: str | None = None
    # Read slices a PNG folder lacks as background (otherwise an incomplete folder is refused).
    fill_missing: bool = False


def read_probability_png(path: Path, height: int, width: int) -> np.ndarray:
    """One prediction PNG as uint8 (H, W): 8-bit single-channel and of the exported size."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(path, "unreadable PNG")
    if image.ndim != 2 or image.dtype != np.uint8:
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise InputError(
            path, f"not an 8-bit single-channel PNG ({image.dtype}, {channels} channel(s)); expected prob*255"
        )
    if image.shape != (height, width):
        raise InputError(
            path, f"size {image.shape[0]}x{image.shape[1]} differs from the exported slice {height}x{width}"
        )
    return image


def _check_rows(rows: pd.DataFrame, geometry: CaseGeometry, manifest: Path) -> None:
    """The manifest's slice sizes and indices must be those of the case's export grid."""
    for orientation, group in rows.groupby("orientation"):
        axis_length = geometry.shape[AXIS_OF[orientation]]
        expected = slice_image(np.empty(geometry.shape, np.uint8), orientation, 0).shape
        sizes = set(zip(group["height"], group["width"], strict=True))
        if sizes != {expected} or not group["index"].between(0, axis_length - 1).all():
            raise InputError(
                manifest,
                f"{orientation} slices of case '{group['case'].iloc[0]}' do not match its geometry "
                f"(export grid {'x'.join(map(str, geometry.shape))})",
            )


def read_views(
    rows: pd.DataFrame, geometry: CaseGeometry, pred_dir: Path, available: set[str] | None = None
) -> dict[str, np.ndarray]:
    """One probability volume (float32 in [0, 1], export grid) per orientation of ``rows``.

    Args:
        rows: the manifest rows of one case.
        geometry: that case's geometry.
        pred_dir: folder of ``<stem>.png``; a missing slice counts as background (the caller
            refuses an incomplete folder unless told to fill it: :meth:`PredictionSource.check`).
        available: the PNG names in ``pred_dir`` (listed once per folder by the caller).
    """
    available = available if available is not None else set(os.listdir(pred_dir))
    present = rows[(rows["stem"] + ".png").isin(available)]
    if present.empty:
        raise InputError(pred_dir, f"no prediction for case '{rows['case'].iloc[0]}'")

    def read(row: tuple) -> np.ndarray:
        return read_probability_png(pred_dir / f"{row.stem}.png", int(row.height), int(row.width))

    with ThreadPoolExecutor(READ_THREADS) as pool:
        images = list(pool.map(read, present.itertuples(index=False)))
    views = {}
    for orientation in [o for o in ORIENTATIONS if o in set(rows["orientation"])]:
        chosen = (present["orientation"] == orientation).to_numpy()
        indices = present["index"].to_numpy()[chosen]
        picked = [image for image, keep in zip(images, chosen, strict=True) if keep]
        stacked = volume_from_images(
            dict(zip(indices.tolist(), picked, strict=True)), orientation, geometry.shape, np.uint8
        )
        views[orientation] = decode_probability(stacked)
    return views


def reassemble_case(
    geometry: CaseGeometry,
    views: Sequence[np.ndarray],
    vote: Vote = "triplanar",
    min_votes: int | None = None,
    threshold: float | Sequence[float] = 0.5,
    min_size_mm3: float = MIN_LESION_MM3,
    baseline: tuple[np.ndarray, np.ndarray] | None = None,
    planes: Sequence[str] | None = None,
    roi: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse export-grid views and map the result to the original t1 grid.

    Args:
        threshold: one value, or one per view (see :func:`fusion.voting.fuse_views`).
        planes: each view's orientation: several models' views of one plane merge before
            the vote (see :func:`fusion.voting.fuse_views`).
        baseline: ``(t0, t1)`` on the export grid: lesions already hyperintense at baseline
            are dropped (:func:`fusion.existing.drop_existing_lesions`); None keeps them.
        roi: where lesions may be (the brain both scans acquired, export grid): the views
            are zero outside it. None: everywhere.

    Returns ``(mask, prob)``: uint8 binary mask and float32 probability (linear
    interpolation), both of ``geometry.original_shape``. Where the export grid is not
    coarser than the scan, the mask maps back by nearest neighbour (exact); elsewhere the
    probability is resampled first and thresholded on the scan's grid, so that a thick-slice
    or sub-millimetre scan gets smooth lesion borders rather than export-voxel blocks.
    """
    if roi is not None:
        views = [np.where(roi, view, np.float32(0)) for view in views]
    mask, prob = fuse_views(views, vote, min_votes, threshold, min_size_mm3, geometry.spacing, planes)
    if baseline is not None:
        mask = drop_existing_lesions(mask, *baseline, spacing=geometry.spacing, inside=roi).astype(np.uint8)
    prob_original = geometry.to_original(prob, order=1)
    if geometry.is_exactly_invertible:
        return geometry.to_original(mask, order=0), prob_original
    decided = _resampled_decision(geometry, mask.astype(bool), prob, operating_level(threshold))
    spacing = spacing_of(np.asarray(geometry.original_affine))
    return remove_small_lesions(decided, spacing, min_size_mm3).astype(np.uint8), prob_original


def _resampled_decision(
    geometry: CaseGeometry, mask: np.ndarray, prob: np.ndarray, level: float
) -> np.ndarray:
    """The fused mask on the original grid: its probability resampled, then thresholded.

    Inside the mask the probability is held above ``level`` and around it below, so the
    original-grid mask follows the probability's contour between export voxels yet holds no
    lesion the fusion did not keep (nor loses voxels a voxel-wise vote kept).
    """
    band = ndimage.binary_dilation(mask, iterations=1)
    above = np.nextafter(np.float32(level), np.float32(1.0))
    score = np.where(mask, np.maximum(prob, above), np.where(band, np.minimum(prob, np.float32(level)), 0))
    return geometry.to_original(score.astype(np.float32), order=1) > level


def folder_thresholds(threshold: Thresholds, folders: int, source: str = "--threshold") -> list[float]:
    """One threshold per prediction folder from one value or one per folder."""
    values = [float(threshold)] if np.isscalar(threshold) else [float(t) for t in threshold]
    if len(values) == 1:
        values *= folders
    if len(values) != folders:
        raise InputError(source, f"give one threshold, or one per model ({folders}), not {len(values)}")
    lowest = 0.0 if len(set(values)) == 1 else np.nextafter(0.0, 1.0)  # calibrating divides by it
    if not all(lowest <= t < 1.0 for t in values):
        raise InputError(source, f"thresholds must lie in {'[0' if lowest == 0 else '(0'}, 1), got {values}")
    return values


def read_baseline(
    export: Path, rows: pd.DataFrame, geometry: CaseGeometry
) -> tuple[np.ndarray, np.ndarray] | None:
    """The case's ``(t0, t1)`` export-grid volumes from its slices' centre channels (None without t0)."""
    volumes = export_volumes(export, rows, geometry, ("t0", "t1"))
    return None if volumes is None else (volumes["t0"], volumes["t1"])


def _t1_header(geometry: CaseGeometry) -> nib.Nifti1Header | None:
    """The source t1's header when the export recorded where it was and it still exists."""
    for key in ("t1", "t1_path", "source_t1"):
        value = geometry.extra.get(key) or geometry.extra.get("sources", {}).get(key)
        if isinstance(value, str) and Path(value).is_file():
            try:
                return nib.load(value).header
            except Exception:  # an unreadable source only costs its header metadata
                return None
    return None


def _select(manifest: pd.DataFrame, options: ReassembleOptions, source: Path) -> list[str]:
    unknown = sorted(set(options.orientations) - set(ORIENTATIONS))
    if unknown or not options.orientations:
        raise InputError(
            "--orientations", f"choose among {', '.join(ORIENTATIONS)} (got {', '.join(unknown)})"
        )
    rows = manifest if options.split is None else manifest[manifest["split"] == options.split]
    cases = list(dict.fromkeys(rows["case"]))
    if options.cases:
        unknown = sorted(set(options.cases) - set(cases))
        if unknown:
            raise InputError(source, f"no slices of case(s) {', '.join(unknown)}")
        cases = [c for c in cases if c in set(options.cases)]
    if not cases:
        raise InputError(source, f"no case to reassemble (split {options.split})")
    return cases


def reassemble(
    options: ReassembleOptions, shard: Shard | None = None, cluster: ClusterOptions | None = None
) -> list[Path]:
    """Reassemble every selected case of an export, or their ``shard`` (I, N), or, with
    ``cluster``'s executor, in its tasks once this run has claimed ``out``; returns the masks
    written (or kept), in case order."""
    slices, out = Path(options.slices), Path(options.out)
    manifest = read_manifest(slices / "manifest.csv")
    cases = shard_of(_select(manifest, options, slices / "manifest.csv"), shard)
    # Only the chosen planes become views (e.g. a single-plane model: --orientations axial).
    manifest = manifest[manifest["orientation"].isin(options.orientations)]
    pred_dirs = [Path(p) for p in options.preds]
    check_not_input(out, "--out", [slices, *pred_dirs])
    sources = [open_source(pred_dir, str(select_device(options.device))) for pred_dir in pred_dirs]
    own = [
        source.default_threshold or operating_point(source.folder, DEFAULT_THRESHOLD) for source in sources
    ]
    thresholds = folder_thresholds(own if options.threshold is None else options.threshold, len(pred_dirs))
    geometries = {}
    for case in cases:  # check everything cheap before writing anything
        geometries[case] = CaseGeometry.load(slices / "cases" / f"{case}.json")
        _check_rows(manifest[manifest["case"] == case], geometries[case], slices / "manifest.csv")
    check_min_votes(options.min_votes, options.vote, _planes(sources, options.orientations))
    for source in sources:
        filled = source.check(manifest, geometries, options.fill_missing)
        if filled:
            print(f"reassemble: {source.folder}: {filled} missing slices read as background (--fill-missing)")
    written = []
    with claim_folder(out, _record(options, pred_dirs, thresholds), "*.nii.gz", options.overwrite) as keep:
        if cluster is not None and cluster.submits:  # the tasks accept this claim: they make the same record
            shares = run_array(cluster, reassemble, len(cases), options=options)
            return [mask for share in shares for mask in share]
        for case in tqdm(cases, desc="reassembling", unit="case", leave=False):
            target = out / f"{case}.nii.gz"
            prob_target = out / f"{case}_prob.nii.gz"
            done = target.is_file() and (prob_target.is_file() or not options.save_prob)
            if not (keep and done):
                rows = manifest[manifest["case"] == case]
                _write_case(case, rows, geometries[case], sources, thresholds, options)
            written.append(target)
    return written


def _planes(sources: Sequence[PredictionSource], orientations: Sequence[str]) -> list[str]:
    """The voters' planes: each PNG folder votes over ``orientations``, a 3D source as one view."""
    return [plane for source in sources for plane in ((VOLUME,) if source.volumetric else orientations)]


def _record(options: ReassembleOptions, pred_dirs: Sequence[Path], thresholds: Sequence[float]) -> dict:
    """What makes the masks of a reassembled folder (which cases, and the prob files, aside)."""
    return {
        "tool": "reassemble",
        "slices": str(Path(options.slices).resolve()),
        "preds": [{"folder": str(p.resolve()), "provenance": read_provenance(p)} for p in pred_dirs],
        "thresholds": list(thresholds),
        "vote": options.vote,
        "min_votes": options.min_votes,
        "min_size_mm3": options.min_size_mm3,
        "keep_existing": options.keep_existing,
        "orientations": list(options.orientations),
        # Only when set, so that folders made before the flag existed keep their record.
        **({"fill_missing": True} if options.fill_missing else {}),
    }


def _write_case(
    case: str,
    rows: pd.DataFrame,
    geometry: CaseGeometry,
    sources: Sequence[PredictionSource],
    thresholds_per_folder: Sequence[float],
    options: ReassembleOptions,
) -> None:
    views, planes, thresholds = [], [], []
    export = Path(options.slices)
    for source, threshold in zip(sources, thresholds_per_folder, strict=True):
        folder_views = source.views(rows, geometry, export, read_views)
        views += folder_views.values()
        planes += folder_views.keys()
        thresholds += [threshold] * len(folder_views)
    baseline = None if options.keep_existing else read_baseline(export, rows, geometry)
    mask, prob = reassemble_case(
        geometry,
        views,
        options.vote,
        options.min_votes,
        thresholds,
        options.min_size_mm3,
        baseline,
        planes,
        roi=read_roi(export, geometry),
    )
    affine, header = np.asarray(geometry.original_affine), _t1_header(geometry)
    out = Path(options.out)
    if options.save_prob:
        save_nifti(prob.astype(np.float32), affine, out / f"{case}_prob.nii.gz", header)
    save_nifti(mask.astype(np.uint8), affine, out / f"{case}.nii.gz", header)
