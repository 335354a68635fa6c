"""``slicer export``: a dataset of NIfTI cases -> the triplanar 2.5D dataset every model reads.

Per case (:func:`prepare_export_case`, which ``slicer export-nnunet`` shares): load and check
(t0, t1, masks), take the brain mask, register t0 onto t1, keep the field of view both scans
acquired, resample to isotropic ``spacing``, crop to the brain plus 4 mm and normalise; then
write every slice of each orientation as a multi-page TIFF (channel recipe x neighbouring
slices), its YOLO-seg label and its mask PNG, the region of interest
``cases/<case>_brain.nii.gz`` and the case's manifest rows. A case is finished when
``cases/<case>.json`` exists (written last, with the settings that made it), so re-running
skips finished cases, refuses ones exported with other settings unless ``overwrite``, and a
failure never leaves a half-written case. At the end the per-case manifests are joined into
``manifest.csv``, and ultralytics' lesion-balanced training listing (``yolo_train.txt``) and
the dataset YAML are written.

>>> import tempfile
>>> from simulation.phantom import write_phantom
>>> tmp = tempfile.TemporaryDirectory(); root = Path(tmp.name)
>>> _ = write_phantom(root / "phantom", cases=2, voxel=4.0)
>>> options = ExportOptions(dataset="phantom", root=root / "phantom", out=root / "export", spacing=4.0)
>>> summary = export_dataset(options)
>>> summary.cases, summary.skipped, summary.slices, summary.lesion_slices, summary.failed
(2, 0, 252, 27, {})
>>> sorted(path.name for path in (root / "export").iterdir())
['cases', 'images', 'labels', 'manifest.csv', 'masks', 'phantom_long.yaml', 'yolo_train.txt']
>>> export_dataset(options).skipped  # finished cases are not exported again
2
>>> tmp.cleanup()
"""

from __future__ import annotations

import json
import multiprocessing
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from runtime.cluster import ClusterOptions, Shard, cap_threads, run_array, select_items
from runtime.errors import InputError
from runtime.files import atomic_path, check_not_input, new_folders
from runtime.threads import thread_budget
from simulation.evolution import simulate_evolution
from slicer.brain import brain_mask
from slicer.dataset_yaml import channel_names, write_export_yaml, write_train_listing
from slicer.datasets import Case, check_case, load_dataset
from slicer.export_options import ExportOptions, ExportSummary, parse_label
from slicer.io import load_mask, load_volume, spacing_of
from slicer.manifest import MANIFEST_COLUMNS, empty_manifest, read_manifest
from slicer.prepare import PreparedCase, prepare_case
from slicer.register import RegistrationError
from slicer.writer import remove_files, roi_name, write_case_slices, write_roi

__all__ = [
    "ExportOptions",
    "ExportSummary",
    "export_dataset",
    "export_case",
    "assign_splits",
    "parse_label",
    "case_seed",
    "EVOLUTION_DRIFT",
]

KINDS = ("images", "labels", "masks")  # the export's per-slice folders, each with a folder per split
EVOLUTION_DRIFT = 0.02  # --simulate-evolution: a pseudo baseline drifts by up to 2 % in intensity


def assign_splits(
    cases: list[Case], val_fraction: float, seed: int, only: str | None = None
) -> dict[str, str]:
    """Split by case, never by slice: ``only`` for every case, else the registry's, else ``val_fraction``.

    Cases without a split are shuffled with ``seed``; a ``val_fraction`` share becomes
    validation (at least one case when there are two or more, never all). When the
    registry names no validation case (MSSEG-1 has Training/Testing), validation is drawn
    from its training cases the same way.
    """
    if only is not None:
        return {c.id: only for c in cases}
    splits = {c.id: c.split for c in cases if c.split}
    pool = sorted(c.id for c in cases if not c.split)
    if "val" not in splits.values():
        pool += sorted(i for i, s in splits.items() if s == "train")
    pool = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
    n_val = round(len(pool) * val_fraction)
    if len(pool) >= 2:
        n_val = min(max(n_val, 1), len(pool) - 1)
    return {**splits, **{case_id: "val" if i < n_val else "train" for i, case_id in enumerate(pool)}}


def case_seed(seed: int, case_id: str) -> int:
    """The random seed of one case: the export's seed and the case id, so a case draws the same
    evolution whichever cases are exported with it."""
    return int(np.random.SeedSequence([seed, zlib.crc32(case_id.encode())]).generate_state(1)[0])


def _load_labels(case: Case, label: str, t1_img: Any) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """The binary label source (consensus or rater N) and the rater masks needed for ``soft``."""
    kind, number = parse_label(label)
    if kind != "consensus" and not case.raters:
        raise InputError(case.t1.parent, f"--label {label} needs rater masks; case '{case.id}' has none")
    if kind == "rater" and number > len(case.raters):
        raise InputError(case.t1.parent, f"--label {label}: case '{case.id}' has {len(case.raters)} raters")
    raters = [load_mask(path)[0] for path in case.raters] if kind == "soft" else []
    if kind == "rater":
        return load_mask(case.raters[number - 1])[0], raters
    return (None if case.consensus is None else load_mask(case.consensus)[0]), raters


def _load_case(case: Case, options: ExportOptions, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Arrays for :func:`prepare_case` and provenance for the case JSON."""
    t1, t1_img = load_volume(case.t1)
    mask, raters = _load_labels(case, options.label, t1_img)
    brain, brain_info = brain_mask(options.brain_mask, t1, t1_img.affine, case.brain_mask, scan=case.t1)
    info: dict[str, Any] = {"sources": {"t1": str(case.t1), "t0": str(case.t0) if case.t0 else None}}
    t0, t0_img = load_volume(case.t0) if case.t0 is not None else (None, None)
    if t0 is None and options.simulate_evolution:
        if mask is None:
            raise InputError(case.t1, "--simulate-evolution needs a lesion mask")
        t0, mask, evolution = simulate_evolution(
            t1, mask, spacing_of(t1_img.affine), seed, drift=EVOLUTION_DRIFT, reacquire=True
        )
        t0_img = t1_img
        near = ndimage.binary_dilation(mask, iterations=1)
        raters = [r * near for r in raters]
        info["evolution"] = evolution.to_dict()
    soft = np.mean(raters, axis=0, dtype=np.float32) if raters else None
    arrays = {"t1": t1, "t1_img": t1_img, "t0": t0, "t0_img": t0_img, "mask": mask, "soft": soft}
    return {**arrays, "brain": brain}, {**info, "brain_mask": brain_info}


def _finished(out: Path, case: Case, settings: dict[str, Any]) -> pd.DataFrame | None:
    path = out / "cases" / f"{case.id}.json"
    if not path.is_file():
        return None
    done = json.loads(path.read_text()).get("extra", {}).get("export")
    if done != settings:
        raise InputError(path, "was exported with other settings or split; use --overwrite or another --out")
    return read_manifest(out / "cases" / f"{case.id}.csv")


def _remove_case(out: Path, case_id: str) -> None:
    manifest = out / "cases" / f"{case_id}.csv"
    if manifest.is_file():
        for stem, split in read_manifest(manifest)[["stem", "split"]].itertuples(index=False):
            remove_files(
                [
                    out / kind / split / f"{stem}{ext}"
                    for kind, ext in (("images", ".tif"), ("labels", ".txt"), ("masks", ".png"))
                ]
            )
    (out / "cases" / f"{case_id}.json").unlink(missing_ok=True)
    (out / "cases" / roi_name(case_id)).unlink(missing_ok=True)
    manifest.unlink(missing_ok=True)


def prepare_export_case(
    case: Case, options: ExportOptions
) -> tuple[PreparedCase, dict[str, Any], dict[str, Any]]:
    """Load, register, resample, crop and normalise one case: the one path of ``slicer export``
    and ``slicer export-nnunet`` (:mod:`slicer.nnunet`). Returns the prepared case, the arrays it
    was made from (on the follow-up's grid: ``t1_img``, ``mask``...) and provenance for the case
    JSON; raises :class:`~slicer.register.RegistrationError` or :class:`InputError`.
    """
    arrays, info = _load_case(case, options, case_seed(options.seed, case.id))
    prepared = prepare_case(
        **arrays,
        spacing=options.spacing,
        register=options.register,
        match_histograms=options.match_histograms,
        seed=options.seed,
        source=case.t1,
    )
    return prepared, arrays, info


def select_cases(options: ExportOptions) -> tuple[list[Case], dict[str, str]]:
    """Check the options and the dataset's cases, and split them by case: the start of both writers."""
    options.check()
    cases = load_dataset(options.dataset, options.root, options.registry, check=False)
    _check_cases(cases, options)
    return cases, assign_splits(cases, options.val_fraction, options.seed, options.split)


def export_case(
    case: Case, split: str, options: ExportOptions
) -> tuple[str, pd.DataFrame | None, str | None]:
    """Export one case; returns (case id, its manifest rows or None, why it failed or None).

    A failed registration is reported, not raised; bad input raises :class:`InputError`.
    Either way the case's partial files are removed.
    """
    out = Path(options.out)
    _remove_case(out, case.id)
    seed = case_seed(options.seed, case.id)
    written: list[Path] = []
    try:
        prepared, _, info = prepare_export_case(case, options)
        rows = write_case_slices(
            prepared,
            case.id,
            split,
            out,
            orientations=options.orientations,
            recipe=options.recipe,
            context=options.context,
            drop_empty=options.drop_empty_fraction,
            seed=seed,
            written=written,
        )
        table = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
        with atomic_path(out / "cases" / f"{case.id}.csv") as tmp:
            table.to_csv(tmp, index=False)
        written.append(out / "cases" / f"{case.id}.csv")
        written.append(write_roi(prepared, out / "cases" / roi_name(case.id)))
        info["brain_mask"] = {**info["brain_mask"], "file": roi_name(case.id), **prepared.info}
        geometry = prepared.geometry.with_extra(
            case=case.id,
            dataset=case.dataset,
            scanner=case.scanner,
            split=split,
            recipe=list(options.recipe),
            context=options.context,
            channel_names=channel_names(options.recipe, options.context),
            registration=prepared.registration.to_dict() if prepared.registration else None,
            export=options.settings(split),
            **info,
        )
        geometry.save(out / "cases" / f"{case.id}.json")
        return case.id, table, None
    except RegistrationError as error:
        remove_files(written)
        return case.id, None, str(error)
    except BaseException:
        remove_files(written)
        raise


def _write_yaml(options: ExportOptions, splits: set[str], manifest: pd.DataFrame) -> Path:
    """``manifest.csv``, the training listing and the dataset YAML: what needs every case."""
    with atomic_path(Path(options.out) / "manifest.csv") as tmp:
        manifest.to_csv(tmp, index=False)
    return write_export_yaml(
        Path(options.out) / f"{options.yaml_name}.yaml",
        splits=splits,
        recipe=options.recipe,
        context=options.context,
        spacing=options.spacing,
        orientations=options.orientations,
        label=options.label,
        dataset=options.dataset,
        export=options.model_settings(),
        train_listing=write_train_listing(Path(options.out), manifest, options.seed),
    )


def _check_cases(cases: list[Case], options: ExportOptions) -> None:
    for case in cases:
        check_case(case, same_grid_t0=options.register == "none")
    single = [c.id for c in cases if c.t0 is None]
    if single and not options.simulate_evolution and set(options.recipe) - {"t1"}:
        raise InputError(
            f"--dataset {options.dataset}",
            f"{len(single)} cases have one time point (e.g. {single[0]}); use --simulate-evolution or --recipe t1",
        )


def _run(
    todo: list[tuple[Case, str]], options: ExportOptions
) -> list[tuple[str, pd.DataFrame | None, str | None]]:
    results = []
    # leave=False: on bad input the one-line error is all that stays on the terminal.
    with tqdm(total=len(todo), desc=f"exporting {options.dataset}", unit="case", leave=False) as progress:
        if options.workers == 1:
            for case, split in todo:
                results.append(export_case(case, split, options))
                progress.update()
            return results
        context = multiprocessing.get_context("spawn")  # fork is unsafe with SimpleITK/OpenMP threads
        threads = (max(1, thread_budget() // options.workers),)  # the workers share this process's budget
        with ProcessPoolExecutor(
            options.workers, mp_context=context, initializer=cap_threads, initargs=threads
        ) as pool:
            futures = [pool.submit(export_case, case, split, options) for case, split in todo]
            try:
                for future in as_completed(futures):
                    results.append(future.result())
                    progress.update()
            except BaseException:
                for pending in futures:
                    pending.cancel()
                raise
    return results


def _export_cases(
    cases: list[Case], splits: dict[str, str], options: ExportOptions
) -> tuple[dict[str, pd.DataFrame], dict[str, str], int]:
    """Each case's manifest rows (finished ones read back), why cases were left out, and how many
    were found finished; a run that exports no case at all is refused."""
    out, tables, todo = Path(options.out), {}, []
    for case in cases:
        done = None if options.overwrite else _finished(out, case, options.settings(splits[case.id]))
        if done is None:
            todo.append((case, splits[case.id]))
        else:
            tables[case.id] = done
    finished, failed = len(tables), {}
    for case_id, table, problem in _run(todo, options):
        if problem is None:
            tables[case_id] = table
        else:
            failed[case_id] = problem
            print(f"slicer export: case {case_id} left out: {problem}")
    if failed and not tables:
        case_id, problem = next(iter(failed.items()))
        raise InputError(out, f"no case exported ({len(failed)} left out; {case_id}: {problem})")
    return tables, failed, finished


def export_dataset(
    options: ExportOptions, shard: Shard | None = None, cluster: ClusterOptions | None = None
) -> ExportSummary:
    """Export a whole dataset (see the module docstring), or the ``shard`` of its ``options.cases``;
    with ``cluster``'s executor its tasks export the cases, and this run joins them."""
    started = time.perf_counter()
    cases, splits = select_cases(options)
    cases = select_items(cases, options.cases, shard, key=lambda case: case.id)
    out = Path(options.out)
    check_not_input(out, "--out", [options.root])
    exported = 0  # by the cluster's tasks: every case is then finished, and skipped below
    if cluster is not None and cluster.submits:
        shares = run_array(cluster, export_dataset, len(cases), options=options)
        exported, options = sum(s.cases - s.skipped for s in shares), replace(options, overwrite=False)
    folders = [out / kind / split for split in sorted({"train", "val", *splits.values()}) for kind in KINDS]
    with new_folders(folders):
        tables, failed, finished = _export_cases(cases, splits, options)
    skipped = finished - exported
    manifest = pd.concat([tables[c.id] for c in cases if c.id in tables] or [empty_manifest()])
    return ExportSummary(
        cases=len(tables),
        slices=len(manifest),
        lesion_slices=int((manifest["lesion_pixels"] > 0).sum()),
        seconds=time.perf_counter() - started,
        failed=failed,
        skipped=skipped,
        yaml_path=_write_yaml(options, set(splits.values()), manifest) if len(cases) == len(splits) else None,
    )
