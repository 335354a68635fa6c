"""One patient, the MSSEG-2 challenge's own contract: two FLAIR scans in, one mask out.

``mslong segment -t1 flair_time01.nii.gz -t2 flair_time02.nii.gz -o seg.nii.gz --weights ...``
registers the baseline onto the follow-up, slices both in memory exactly as the export
does, runs every model on every plane, fuses the views with lesion-wise voting and writes
the binary new-lesion mask on the follow-up scan's grid, with ``<output>_lesions.csv`` (one
row per new lesion: volume, centroid, mean probability). (Here ``-t1``/``-t2`` are the time
points, as in the challenge, not MR contrasts.) The pair is sliced as the models were
trained (spacing, histogram matching, brain mask: :func:`mslong.models.ensemble_settings`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm import tqdm

from fusion.baseline import BASELINE_Z, subtraction_baseline
from fusion.ensemble import LEAD
from fusion.metrics import Lesions
from fusion.reassemble import folder_thresholds, to_scan_grid
from fusion.record import describe_leader, member_leader
from fusion.verify import load_verifier, verify
from fusion.views import fuse_case
from fusion.voting import VOLUME, check_min_votes, operating_level
from runtime.errors import InputError
from runtime.files import atomic_path, save_nifti, sibling_path
from runtime.predictions import quantise_probability
from runtime.provenance import file_sha256
from runtime.timing import stage, timed
from slicer.brain import brain_mask
from slicer.geometry import AXIS_OF, ORIENTATIONS, volume_from_images
from slicer.io import check_same_grid, load_nifti, load_volume, spacing_of
from slicer.prepare import PreparedCase, prepare_case, slice_channels
from slicer.register import RegistrationError

if TYPE_CHECKING:
    from mslong.models import Predictor

__all__ = [
    "SegmentResult",
    "segment_patient",
    "predict_views",
    "check_same_subject",
    "lesion_table",
    "LESION_COLUMNS",
]

# The two scans' fields of view must overlap at least this much (fraction of the smaller one).
MIN_FOV_OVERLAP = 0.5
# Slicing defaults when no model says otherwise (the subtraction baseline, older checkpoints).
DEFAULT_SPACING = 1.0
LESION_COLUMNS = ("lesion", "volume_mm3", "x_mm", "y_mm", "z_mm", "mean_probability")


@dataclass(frozen=True)
class SegmentResult:
    out: Path
    new_lesion_voxels: int
    new_lesions: int
    models: tuple[str, ...]
    correlation: float  # edge correlation of t1 and the (registered) t0, as slicer.register measures it
    new_lesion_mm3: float = 0.0
    spacing: float = DEFAULT_SPACING
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds per stage (runtime.timing)


def _world_box(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in img.shape[:3]], indexing="ij")).reshape(3, -1)
    world = img.affine[:3, :3] @ corners + img.affine[:3, 3:4]
    return world.min(axis=1), world.max(axis=1)


def check_same_subject(
    t0_img: nib.Nifti1Image, t1_img: nib.Nifti1Image, t0_path: Path, t1_path: Path
) -> None:
    """Refuse scans whose fields of view barely overlap (different subjects or sessions gone wrong)."""
    (low0, high0), (low1, high1) = _world_box(t0_img), _world_box(t1_img)
    overlap = np.prod(np.clip(np.minimum(high0, high1) - np.maximum(low0, low1), 0, None))
    smaller = min(np.prod(high0 - low0), np.prod(high1 - low1))
    if overlap < MIN_FOV_OVERLAP * smaller:
        raise InputError(
            t0_path,
            f"field of view overlaps {Path(t1_path).name} by {overlap / smaller:.0%} only: not the same subject?",
        )


def predict_views(
    prepared: PreparedCase, predictors: Sequence, batch: int = 16, orientations: Sequence[str] | None = None
) -> list[tuple[str, np.ndarray]]:
    """``(orientation, export-grid probability volume)`` per (model, plane it votes on: see
    :func:`model_planes`), sliced in memory; a 3D model gives one view, of orientation
    :data:`fusion.voting.VOLUME`."""
    views = []
    for predictor in predictors:
        with stage(f"model {predictor.name}"):
            views += _model_views(prepared, predictor, batch, model_planes(predictor, orientations))
    return views


def _model_views(
    prepared: PreparedCase, predictor: Predictor, batch: int, planes: Sequence[str]
) -> list[tuple[str, np.ndarray]]:
    if predictor.predict_volume is not None:
        return [(VOLUME, predictor.predict_volume(prepared))]
    views = []
    for orientation in planes:
        # The fusion zeroes every view outside the region of interest: a slice that misses it
        # (the neck, the skull's top, beyond the joint field of view) needs no prediction.
        axis = AXIS_OF[orientation]
        indices = np.flatnonzero(prepared.roi.any(axis=tuple(a for a in range(3) if a != axis)))
        images = (
            slice_channels(prepared, orientation, int(index), predictor.recipe, predictor.context)
            for index in indices
        )
        probs = tqdm(
            predictor.predict(images, batch=batch),
            total=len(indices),
            desc=f"{predictor.name} {orientation}",
            unit="slice",
            leave=False,
        )
        # Rounded as the prediction PNGs are, so that decisions equal reassemble's on files.
        slices = {int(index): quantise_probability(prob) for index, prob in zip(indices, probs, strict=True)}
        volume = volume_from_images(slices, orientation, prepared.geometry.shape, np.float32)
        views.append((orientation, volume))
    return views


def model_planes(predictor: Predictor, orientations: Sequence[str] | None = None) -> tuple[str, ...]:
    """The planes a model votes on: those it was trained on (all three for a checkpoint that does
    not say), within ``orientations`` when given; a 3D model is one view.

    Raises:
        InputError: ``orientations`` holds none of the model's planes.
    """
    if predictor.predict_volume is not None:
        return (VOLUME,)
    trained = tuple(predictor.export.get("orientations") or ORIENTATIONS)
    planes = tuple(plane for plane in trained if orientations is None or plane in orientations)
    if not planes:
        raise InputError(
            "--orientations", f"{predictor.name} was trained on {', '.join(trained)} slices only"
        )
    return planes


def segment_patient(
    time01: Path,
    time02: Path,
    out: Path,
    weights: Sequence[Path] = (),
    *,
    predictors: Sequence[Predictor] | None = None,
    device: str | None = None,
    vote: str = LEAD,
    min_votes: int | None = None,
    threshold: float | Sequence[float] | None = None,
    validation: Sequence[Path] = (),
    min_size_mm3: float = 3.0,
    keep_existing: bool = False,
    spacing: float | None = None,
    register: str = "auto",
    brain_mask_mode: str | None = None,
    brain_mask_file: Path | None = None,
    batch: int = 16,
    orientations: Sequence[str] | None = None,
    save_prob: bool = False,
    baseline_z: float = BASELINE_Z,
    verifier: Path | None = None,
    bias_correction: str = "none",
) -> SegmentResult:
    """Segment the new lesions of one patient and write ``out`` on the follow-up's grid.

    Without ``weights`` (or already loaded ``predictors``, which a batch passes to load each
    model once) the classic subtraction baseline runs instead of the networks.
    ``threshold``: None gives each model its own operating point (``Predictor.threshold``);
    one value serves every model, or give one per weights file. ``vote`` ``lead`` gives each
    model its role from its record on ``validation`` (one prediction folder per model, of its
    export's validation cases: :mod:`fusion.ensemble`); without them every model votes alike
    (``triplanar``). Lesions already hyperintense
    at baseline are dropped unless ``keep_existing`` (:mod:`fusion.existing`). Lesions are
    looked for in the brain both scans acquired: ``brain_mask_file`` (on the follow-up's grid)
    or a mask computed by deepbet (:func:`slicer.brain.brain_mask`, ``brain_mask_mode``).
    ``spacing``, ``brain_mask_mode``: None takes the models' (their export's), else 1 mm / auto.
    ``orientations``: the planes whose slices are predicted and vote (None: each model's own,
    those it was trained on; e.g. ``("axial",)``, a thick scan's acquisition plane).
    ``baseline_z``: the subtraction baseline's threshold on the robust z-score of the brightening.
    ``verifier``: without weights, the baseline proposes candidates at a low z and this trained
    lesion verifier (its file) accepts or rejects each (:mod:`fusion.verify`); None runs the
    plain baseline at ``baseline_z``.
    ``bias_correction``: ``n4`` removes each scan's bias field first (measured against the
    default in docs/results.md; see :func:`slicer.prepare.prepare_case`).
    """
    from mslong.models import ensemble_settings, load_predictor  # imports torch: only when segmenting

    with timed() as seconds:
        if predictors is None:
            with stage("load models"):
                predictors = [load_predictor(path, device=device) for path in weights]
        checker = None
        if verifier is not None and not predictors:
            with stage("load models"):
                checker = load_verifier(verifier)
            trained = {"spacing": checker.spacing}
        check_min_votes(
            min_votes, vote, [plane for p in predictors for plane in model_planes(p, orientations)]
        )
        if checker is None:
            trained = ensemble_settings(predictors)
        spacing = spacing or trained.get("spacing") or DEFAULT_SPACING
        brain_mask_mode = brain_mask_mode or trained.get("brain_mask") or "auto"
        with stage("read"):
            t0, t0_img = load_volume(time01)
            t1, t1_img = load_volume(time02)
            check_same_subject(t0_img, t1_img, time01, time02)
            if brain_mask_file is not None:
                check_same_grid(load_nifti(brain_mask_file), t1_img, brain_mask_file, time02)
        with stage("brain mask"):
            brain, _ = brain_mask(
                brain_mask_mode, t1, t1_img.affine, brain_mask_file, scan=time02, device=device or "cpu"
            )
        own = [predictor.threshold for predictor in predictors]
        per_model = (
            folder_thresholds(own if threshold is None else threshold, len(predictors)) if predictors else []
        )
        leader = None
        if predictors:  # before the slow steps: a wrong --validation folder stops here
            vote, leader = _fusion_rule(vote, predictors, per_model, validation)
        try:
            prepared = prepare_case(
                t1,
                t1_img,
                t0,
                t0_img,
                brain=brain,
                spacing=spacing,
                register=register,
                match_histograms=bool(trained.get("match_histograms", False)),
                source=time02,
                bias_correction=bias_correction,
            )
        except RegistrationError as error:
            # Registration refuses pairs whose edges do not correlate: often two different subjects.
            raise InputError(time01, f"cannot be aligned with {Path(time02).name}: {error}") from None
        planes, members = None, None
        if predictors:
            planes, views = zip(*predict_views(prepared, predictors, batch, orientations), strict=True)
            per_view = [len(model_planes(p, orientations)) for p in predictors]
            threshold = [t for t, n in zip(per_model, per_view, strict=True) for _ in range(n)]
            members = [m for m, n in enumerate(per_view) for _ in range(n)]
        elif checker is not None:  # one view: each candidate's score
            with stage("verified candidates"):
                views = [
                    verify(
                        prepared.normalised["t1n"], prepared.normalised["t0n"], prepared.roi, spacing, checker
                    )
                ]
            vote, threshold = "none", checker.threshold
        else:  # one view, nothing to vote on
            with stage("subtraction baseline"):
                views = [
                    subtraction_baseline(
                        prepared.normalised["t1n"],
                        prepared.normalised["t0n"],
                        spacing,
                        baseline_z,
                        head=prepared.roi,
                    )
                ]
            vote, threshold = "none", 0.5
        baseline = None if keep_existing else (prepared.volumes["t0"], prepared.volumes["t1"])
        with stage("fusion"):
            fused = fuse_case(views, vote, min_votes, threshold, min_size_mm3, prepared.geometry.spacing,
                              baseline, planes, prepared.search, members, leader)  # fmt: skip
            mask, prob = to_scan_grid(prepared.geometry, *fused, operating_level(threshold), min_size_mm3)
        with stage("writing"):
            table = lesion_table(mask, prob, t1_img.affine)
            save_nifti(mask.astype(np.uint8), t1_img.affine, out, header=t1_img.header)
            with atomic_path(sibling_path(out, "_lesions.csv")) as tmp:
                table.to_csv(tmp, index=False)
            if save_prob:
                save_nifti(
                    prob.astype(np.float32),
                    t1_img.affine,
                    sibling_path(out, "_prob.nii.gz"),
                    header=t1_img.header,
                )
    return SegmentResult(
        out=Path(out),
        new_lesion_voxels=int(mask.sum()),
        new_lesions=len(table),
        models=tuple(p.name for p in predictors)
        or (("verified candidates",) if checker else ("subtraction",)),
        correlation=prepared.registration.correlation if prepared.registration else float("nan"),
        new_lesion_mm3=float(table["volume_mm3"].sum()),
        spacing=spacing,
        seconds=seconds,
    )


def _fusion_rule(
    vote: str, predictors: Sequence[Predictor], thresholds: Sequence[float], validation: Sequence[Path]
) -> tuple[str, int | None]:
    """``vote``; for ``lead`` with several models, the leader by ``validation``, or the vote
    before (``triplanar``: every model alike) when there is nothing to judge them by."""
    if vote != LEAD:
        return vote, None
    if len(predictors) == 1:  # a model alone leads: its own triplanar vote
        return "triplanar", None
    if not validation:
        print(
            "mslong segment: no --validation folders to judge the models by: every model votes alike (triplanar)"
        )
        return "triplanar", None
    if len(validation) != len(predictors):
        raise InputError(
            "--validation", f"give one folder per model ({len(predictors)}), not {len(validation)}"
        )
    shas = tuple(file_sha256(p.weights) if p.weights.is_file() else None for p in predictors)
    leader = _leader(tuple(map(Path, validation)), tuple(thresholds), shas)
    return (LEAD, leader) if leader is not None else ("triplanar", None)


@functools.cache
def _leader(
    validation: tuple[Path, ...], thresholds: tuple[float, ...], shas: tuple[str | None, ...]
) -> int | None:
    """The leading model, worked out once per process (a list of patients shares it)."""
    leader, records = member_leader(validation, thresholds, shas)
    print(describe_leader(leader, records, validation, "mslong segment"))
    return leader


def lesion_table(mask: np.ndarray, prob: np.ndarray, affine: np.ndarray) -> pd.DataFrame:
    """One row per lesion of ``mask`` (MSSEG-2 definition, largest first): volume, centroid, mean probability."""
    spacing = spacing_of(affine)
    lesions = Lesions.of(mask, spacing)
    rows = pd.DataFrame(lesions.describe(affine, float(np.prod(spacing))), columns=list(LESION_COLUMNS[:-1]))
    labels = lesions.labels.reshape(-1)
    sums = np.bincount(labels, weights=prob.reshape(-1), minlength=lesions.n + 1)[1:]
    rows["mean_probability"] = sums / np.maximum(lesions.sizes[1:], 1)
    return rows
