"""From per-slice probability PNGs back to one new-lesion mask per case, in the t1 grid.

Layers, lowest first: :mod:`fusion.views` (one case's PNGs -> probability volumes on the
export grid, fused there, without the lesions already there at baseline), :func:`to_scan_grid`
(the fused mask and probability in the scan's own grid, in memory; what the one-patient command
uses too), :func:`reassemble` (a whole export folder, written as ``<case>.nii.gz``).

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

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from fusion.ensemble import LEAD
from fusion.record import describe_leader, member_leader
from fusion.sources import PredictionSource, open_source
from fusion.views import fuse_case, read_baseline, read_views
from fusion.voting import VOLUME, check_min_votes, operating_level
from runtime.cluster import ClusterOptions, Shard, run_array, shard_of
from runtime.devices import select_device
from runtime.errors import InputError
from runtime.files import check_not_input, save_nifti
from runtime.lesions import MIN_LESION_MM3, remove_small_lesions
from runtime.provenance import claim_folder, operating_point, read_provenance
from slicer.geometry import AXIS_OF, ORIENTATIONS, CaseGeometry, slice_image
from slicer.io import spacing_of
from slicer.manifest import read_manifest
from slicer.writer import read_roi

__all__ = [
    "Thresholds",
    "ReassembleOptions",
    "folder_thresholds",
    "to_scan_grid",
    "reassemble",
]

# The operating point of a prediction folder that does not say which model made it.
DEFAULT_THRESHOLD = 0.5
Thresholds = float | Sequence[float]


@dataclass
class ReassembleOptions:
    """Everything ``reassemble`` needs (the CLI fills it from its flags)."""

    slices: Path | str
    preds: Sequence[Path | str]
    out: Path | str
    # The model with the best validation record leads (fusion.ensemble); "triplanar" is the
    # vote before, every member alike.
    vote: str = LEAD
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
    # The lead rule's evidence: one prediction folder per ``preds`` entry, of the same model on
    # the export's validation cases; empty: the ``preds`` folders themselves (fusion.record).
    validation: Sequence[Path | str] = field(default_factory=tuple)


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


def to_scan_grid(
    geometry: CaseGeometry,
    mask: np.ndarray,
    prob: np.ndarray,
    level: float,
    min_size_mm3: float = MIN_LESION_MM3,
) -> tuple[np.ndarray, np.ndarray]:
    """A case's fused export-grid ``mask`` and ``prob`` (:func:`fusion.views.fuse_case`) on the
    original t1 grid; ``level`` is the fused probability's operating level
    (:func:`fusion.voting.operating_level` of the thresholds).

    Returns ``(mask, prob)``: uint8 binary mask and float32 probability (linear
    interpolation), both of ``geometry.original_shape``. Where the export grid is not
    coarser than the scan, the mask maps back by nearest neighbour (exact); elsewhere the
    probability is resampled first and thresholded on the scan's grid, so that a thick-slice
    or sub-millimetre scan gets smooth lesion borders rather than export-voxel blocks.
    """
    prob_original = geometry.to_original(prob, order=1)
    if geometry.is_exactly_invertible:
        return geometry.to_original(mask, order=0), prob_original
    decided = _resampled_decision(geometry, mask.astype(bool), prob, level)
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
    rule = _fusion_rule(options, sources, thresholds)
    for source in sources:
        filled = source.check(manifest, geometries, options.fill_missing)
        if filled:
            print(f"reassemble: {source.folder}: {filled} missing slices read as background (--fill-missing)")
    written = []
    record = _record(options, pred_dirs, thresholds, rule)
    with claim_folder(out, record, "*.nii.gz", options.overwrite) as keep:
        if cluster is not None and cluster.submits:  # the tasks accept this claim: they make the same record
            shares = run_array(cluster, reassemble, len(cases), options=options)
            return [mask for share in shares for mask in share]
        for case in tqdm(cases, desc="reassembling", unit="case", leave=False):
            target = out / f"{case}.nii.gz"
            prob_target = out / f"{case}_prob.nii.gz"
            done = target.is_file() and (prob_target.is_file() or not options.save_prob)
            if not (keep and done):
                rows = manifest[manifest["case"] == case]
                _write_case(case, rows, geometries[case], sources, thresholds, options, rule)
            written.append(target)
    return written


def _planes(sources: Sequence[PredictionSource], orientations: Sequence[str]) -> list[str]:
    """The voters' planes: each PNG folder votes over ``orientations``, a 3D source as one view."""
    return [plane for source in sources for plane in ((VOLUME,) if source.volumetric else orientations)]


@dataclass(frozen=True)
class FusionRule:
    """The rule a reassembly runs: ``vote``, and for ``lead`` the leader and every model's record."""

    vote: str
    leader: int | None = None
    records: tuple[dict | None, ...] = ()


def _fusion_rule(
    options: ReassembleOptions, sources: Sequence[PredictionSource], thresholds: Sequence[float]
) -> FusionRule:
    """``options.vote``; for ``lead`` with several models, the leader by their validation
    records, or the vote before (``triplanar``) when a model has none."""
    if options.vote != LEAD:
        return FusionRule(options.vote)
    if len(sources) == 1:  # a model alone leads: its own triplanar vote
        return FusionRule("triplanar")
    validation = [Path(p) for p in options.validation] or [source.folder for source in sources]
    if len(validation) != len(sources):
        raise InputError(
            "--validation", f"give one folder per --preds folder ({len(sources)}), not {len(validation)}"
        )
    shas = [(read_provenance(source.folder) or {}).get("weights_sha256") for source in sources]
    leader, records = member_leader(validation, thresholds, shas)
    print(describe_leader(leader, records, validation, "reassemble"))
    return FusionRule(LEAD, leader, tuple(records)) if leader is not None else FusionRule("triplanar")


def _record(
    options: ReassembleOptions, pred_dirs: Sequence[Path], thresholds: Sequence[float], rule: FusionRule
) -> dict:
    """What makes the masks of a reassembled folder (which cases, and the prob files, aside)."""
    return {
        "tool": "reassemble",
        "slices": str(Path(options.slices).resolve()),
        "preds": [{"folder": str(p.resolve()), "provenance": read_provenance(p)} for p in pred_dirs],
        "thresholds": list(thresholds),
        "vote": rule.vote,
        # Only for the lead rule, so that folders made by the other votes keep their record.
        **({"leader": rule.leader, "validation": list(rule.records)} if rule.vote == LEAD else {}),
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
    rule: FusionRule,
) -> None:
    views, planes, thresholds, members = [], [], [], []
    export = Path(options.slices)
    for member, (source, threshold) in enumerate(zip(sources, thresholds_per_folder, strict=True)):
        folder_views = source.views(rows, geometry, export, read_views)
        views += folder_views.values()
        planes += folder_views.keys()
        thresholds += [threshold] * len(folder_views)
        members += [member] * len(folder_views)
    baseline = None if options.keep_existing else read_baseline(export, rows, geometry)
    roi = read_roi(export, geometry)
    fused = fuse_case(views, rule.vote, options.min_votes, thresholds, options.min_size_mm3, geometry.spacing,
                      baseline, planes, roi, members, rule.leader)  # fmt: skip
    mask, prob = to_scan_grid(geometry, *fused, operating_level(thresholds), options.min_size_mm3)
    affine, header = np.asarray(geometry.original_affine), _t1_header(geometry)
    out = Path(options.out)
    if options.save_prob:
        save_nifti(prob.astype(np.float32), affine, out / f"{case}_prob.nii.gz", header)
    save_nifti(mask.astype(np.uint8), affine, out / f"{case}.nii.gz", header)
