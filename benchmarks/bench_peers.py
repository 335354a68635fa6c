"""mslong against a published peer on the real pairs: FreeSurfer's SAMSEG, one table.

What it measures: on the two real longitudinal pairs of the Ljubljana database (CC-BY;
``ROOT/longitudinal/patient01``, ``patient12``; the co-registered scans
``flair_time0{1,2}_on_middle_space``, the MSSEG-2 form), the new lesions found by

- mslong's subtraction baseline (``mslong segment`` without weights, exactly as
  ``benchmarks/bench_real.py`` runs and scores it: :func:`bench_real.score_pair`), and with
  ``--weights`` a trained mslong model;
- SAMSEG cross-sectional (``run_samseg --lesion``, FreeSurfer's Bayesian whole-brain
  segmentation with its lesion shape model; Cerri et al., NeuroImage 225, 2021), run on each
  time point alone; its new lesions are the follow-up's lesion components (label 99 of
  ``seg.mgz``) that share no voxel with the baseline's lesion mask;
- SAMSEG longitudinal (``run_samseg_long --lesion``, both time points in one model) on one
  pair, under ``--long-timeout`` seconds: if it does not finish the table says so;

all scored by the MSSEG-2 rules (:func:`fusion.metrics.score_case`) against the brightening-change
reference (``ground_truth.nii.gz``), per pair and the mean of the two, with each method's wall
time per pair (SAMSEG cross-sectional: its two runs, one per time point, added).

Why the no-overlap rule: a cross-sectional tool segments all lesions of one scan, not the new ones.
MSSEG-2 entries built on cross-sectional tools derived new lesions by the usual
cross-sectional-difference rule: a lesion of the follow-up is new when no voxel of it is lesion at
baseline (a lesion that grows touches its old self, so it is dropped: the rule finds new lesions,
not the new parts of enlarging ones, which the reference also holds). Lesions are those of the
MSSEG-2 rules, as :func:`runtime.lesions.label_lesions` defines them for every package:
6-connected components strictly larger than 3 mm³. SAMSEG writes ``seg.mgz`` on its input's grid;
the script checks that grid against the common space and resamples by nearest neighbour where
they differ. SAMSEG runs with its documented options for one FLAIR input (``--lesion
--lesion-mask-pattern 1 --pallidum-separate``: lesions brighter than the cortex in FLAIR, pallidum
apart from white matter when a FLAIR is used), its default threshold (0.3) and random seed; mslong
with its defaults. Nothing is tuned on these pairs.

Run (SAMSEG takes about 14 min per scan on a free core, 19-29 min on the project's 2 shared cores,
so about 1.5 h in all with ``--jobs 2``; finished SAMSEG runs and mslong masks are cached under
``--work`` with their wall time, so a rerun only scores; a longitudinal run that did not finish is
not retried unless ``--long-timeout`` grows)::

    python benchmarks/bench_peers.py --root ../shared/data/ljubljana --work /tmp/bench_peers
    python benchmarks/bench_peers.py --root ../shared/data/ljubljana --work /tmp/bench_peers \\
        --samseg-bin .venv-peers/bin --jobs 2 --figure docs/img
    python benchmarks/bench_peers.py ... --weights runs/unext/best.pt runs/yolo/best.pt  # a trained row

Install the peer in a venv of its own (SAMSEG pins numpy<2, so it cannot share mslong's; the
script calls its commands as subprocesses), the packages of the project's ``peers`` extra::

    python -m venv .venv-peers && .venv-peers/bin/pip install samseg tensorflow-cpu

``--samseg-bin DIR`` names the folder of ``run_samseg`` and ``run_samseg_long`` (default: where
``run_samseg`` is on PATH). Each SAMSEG run gets ``--threads 1``; ``--jobs`` runs that many at once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import bench_real  # benchmarks/ is on sys.path when this script runs
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from nibabel.processing import resample_from_to  # noqa: E402

from fusion.metrics import score_case  # noqa: E402
from fusion.report import GT_COLOUR, PRED_COLOUR  # noqa: E402
from runtime.lesions import label_lesions  # noqa: E402
from slicer.geometry import slice_image, to_canonical_array  # noqa: E402
from slicer.io import spacing_of  # noqa: E402

PATIENTS = bench_real.PATIENTS
SOURCE = "co-registered"
TIME_POINTS = bench_real.INPUTS[SOURCE]  # (baseline, follow-up) file names
LESION_LABEL = 99  # SAMSEG's lesion label in seg.mgz
LESION_FLAGS = ["--lesion", "--lesion-mask-pattern", "1", "--pallidum-separate"]  # one FLAIR input
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}
BASELINE = "mslong, subtraction baseline"
SAMSEG = "SAMSEG cross-sectional, t1 lesions not touching t0's"
SAMSEG_LONG = "SAMSEG longitudinal"
COLUMNS = ("dice", "f1", "sensitivity", "precision")


@dataclass(frozen=True)
class Job:
    """One SAMSEG command: its output folder (written whole on success), status and log files."""

    name: str
    command: list[str]  # without its output folder, added as ``-o``
    folder: Path
    timeout: float | None = None

    @property
    def status_file(self) -> Path:
        return self.folder.with_name(f"{self.folder.name}.json")

    @property
    def log_file(self) -> Path:
        return self.folder.with_name(f"{self.folder.name}.log")


def _say(line: str) -> None:
    """One line of progress, whole even when two SAMSEG threads report at once."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def samseg_bin(folder: Path | None) -> Path:
    """The folder of ``run_samseg`` and ``run_samseg_long``; exits 2 with one line where absent."""
    if folder is None:
        found = shutil.which("run_samseg")
        folder = Path(found).parent if found else None
    missing = folder is None or not all(
        (folder / name).is_file() for name in ("run_samseg", "run_samseg_long")
    )
    if missing:
        where = f"in {folder}" if folder else "on PATH"
        print(f"bench_peers: run_samseg and run_samseg_long not found {where}; install SAMSEG "
              "(see this script's docstring) and pass --samseg-bin DIR", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    return folder


def cached_status(job: Job) -> dict | None:
    """The status of an earlier run worth reusing: finished, or timed out under as long a limit."""
    if not job.status_file.is_file():
        return None
    status = json.loads(job.status_file.read_text())
    if status["finished"] and job.folder.is_dir():
        return status
    gave_up = status.get("timed_out") and job.timeout is not None and status["timeout"] >= job.timeout
    return status if gave_up else None


def _stop(process: subprocess.Popen) -> None:
    """End the process group this script started for one SAMSEG run."""
    for sent, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sent)
            process.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_job(job: Job) -> dict:
    """Run one SAMSEG command (or reuse its cached run); its status: finished, seconds, timeout."""
    status = cached_status(job)
    if status is not None:
        _say(f"{job.name}: reused ({status['seconds']:.0f} s, finished {status['finished']})")
        return status
    partial = job.folder.with_name(f"{job.folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [*job.command, "-o", str(partial)]
    _say(f"{job.name}: {' '.join(command)}")
    started = time.perf_counter()
    with job.log_file.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **ONE_THREAD}, start_new_session=True)  # fmt: skip
        try:
            returncode = process.wait(job.timeout)
        except subprocess.TimeoutExpired:
            _stop(process)
            returncode = None
    seconds = time.perf_counter() - started
    finished = returncode == 0
    if finished:
        shutil.rmtree(job.folder, ignore_errors=True)
        os.replace(partial, job.folder)
    else:
        shutil.rmtree(partial, ignore_errors=True)
    status = {"finished": finished, "timed_out": returncode is None, "returncode": returncode,
              "seconds": seconds, "timeout": job.timeout, "command": command,
              "load_average": os.getloadavg()}  # fmt: skip
    if returncode is None or finished:  # a crash is not cached: a rerun tries again
        job.status_file.write_text(json.dumps(status, indent=1))
    _say(f"{job.name}: {'finished' if finished else 'stopped'} after {seconds:.0f} s "
         f"(exit {returncode}; log {job.log_file})")  # fmt: skip
    return status


def samseg_jobs(root: Path, work: Path, bin_dir: Path, long_pair: str, long_timeout: float) -> list[Job]:
    """The longitudinal run first (the longest, under its limit), then one run per scan."""
    longitudinal = root / "longitudinal"
    scans = [longitudinal / long_pair / name for name in TIME_POINTS]
    jobs = [Job(f"run_samseg_long {long_pair}",
                [str(bin_dir / "run_samseg_long"), *(a for scan in scans for a in ("-t", str(scan))),
                 "--threads", "1", *LESION_FLAGS],
                work / "samseg_long" / long_pair, long_timeout)]  # fmt: skip
    for patient in PATIENTS:
        for point, name in zip(("t0", "t1"), TIME_POINTS, strict=True):
            command = [
                str(bin_dir / "run_samseg"),
                "-i",
                str(longitudinal / patient / name),
                "--threads",
                "1",
            ]
            jobs.append(Job(f"run_samseg {patient} {point}", [*command, *LESION_FLAGS],
                            work / "samseg" / f"{patient}_{point}"))  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        job.folder.parent.mkdir(parents=True, exist_ok=True)
    return jobs


def lesion_mask(seg_file: Path, reference: nib.Nifti1Image) -> np.ndarray:
    """SAMSEG's lesions (label 99) on the reference's grid, by nearest neighbour where the grids differ."""
    seg = nib.load(seg_file)
    same = seg.shape[:3] == reference.shape[:3] and np.allclose(seg.affine, reference.affine, atol=1e-3)
    if not same:
        print(f"{seg_file}: grid differs from the common space; resampled by nearest neighbour")
        seg = resample_from_to(seg, (reference.shape[:3], reference.affine), order=0)
    return np.asarray(seg.dataobj).reshape(reference.shape[:3]) == LESION_LABEL  # one frame


def new_lesions(baseline: np.ndarray, follow_up: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Follow-up lesions (6-connected, > 3 mm³) of which no voxel is lesion at baseline."""
    labels, _ = label_lesions(follow_up, spacing)
    old = np.unique(labels[baseline & (labels > 0)])
    return (labels > 0) & ~np.isin(labels, old)


def _reference(patient: str, root: Path) -> nib.Nifti1Image:
    return nib.load(root / "longitudinal" / patient / "ground_truth.nii.gz")


def _record(method: str, patient: str, prediction: np.ndarray, seconds: float, root: Path) -> dict:
    reference = _reference(patient, root)
    scores = score_case(np.asarray(reference.dataobj) > 0, prediction, spacing_of(reference.affine))
    return {"method": method, "patient": patient, "seconds": seconds, **scores}


def samseg_new(folders: tuple[Path, Path], patient: str, root: Path) -> np.ndarray:
    """SAMSEG's new lesions of one pair from its baseline and follow-up ``seg.mgz``."""
    reference = _reference(patient, root)
    baseline, follow_up = (lesion_mask(folder / "seg.mgz", reference) for folder in folders)
    return new_lesions(baseline, follow_up, spacing_of(reference.affine))


def samseg_records(jobs: list[Job], statuses: list[dict], root: Path, long_pair: str) -> tuple[list, dict]:
    """Scores of both SAMSEG rows, and the cross-sectional new-lesion masks for the figures."""
    by_folder = {job.folder: status for job, status in zip(jobs, statuses, strict=True)}
    long_job, records, masks = jobs[0], [], {}
    for patient in PATIENTS:
        folders = tuple(job.folder for job in jobs[1:] if job.folder.name.startswith(f"{patient}_"))
        if not all(by_folder[folder]["finished"] for folder in folders):
            records.append({"method": SAMSEG, "patient": patient, "note": "failed, see its log"})
            continue
        masks[patient] = samseg_new(folders, patient, root)
        seconds = sum(by_folder[folder]["seconds"] for folder in folders)
        records.append(_record(SAMSEG, patient, masks[patient], seconds, root))
    status = by_folder[long_job.folder]
    if status["finished"]:
        folders = (long_job.folder / "tp001", long_job.folder / "tp002")
        records.append(
            _record(SAMSEG_LONG, long_pair, samseg_new(folders, long_pair, root), status["seconds"], root)
        )
    else:
        note = (
            f"did not finish in {status['timeout']:.0f} s" if status["timed_out"] else "failed, see its log"
        )
        records.append(
            {"method": SAMSEG_LONG, "patient": long_pair, "seconds": status["seconds"], "note": note}
        )
    return records, masks


def mslong_record(
    method: str, patient: str, weights: list[Path], out: Path, root: Path, spacing: float | None
) -> dict:
    """``mslong segment`` on one pair, scored by :func:`bench_real.score_pair`; its time cached beside it.

    ``spacing``: None segments at the trained model's own spacing (its export's), as ``mslong segment`` does.
    """
    timing = out.with_name(out.name.replace(".nii.gz", ".json"))
    started = time.perf_counter()
    scores = bench_real.score_pair(root / "longitudinal" / patient, SOURCE, weights, out, spacing=spacing)
    if not timing.is_file():
        timing.write_text(
            json.dumps({"seconds": time.perf_counter() - started, "load_average": os.getloadavg()})
        )
    seconds = json.loads(timing.read_text())["seconds"]
    return {"method": method, "patient": patient, "seconds": seconds, **scores}


def _mask_path(work: Path, patient: str, weights: list[Path], spacing: float | None) -> Path:
    """Where one mslong mask is cached: per model (its files and their times) and spacing."""
    if not weights:
        return work / "mslong" / "baseline" / f"{patient}_{spacing:g}mm.nii.gz"
    files = "|".join(f"{path.resolve()}:{path.stat().st_mtime_ns}" for path in weights)
    tag = hashlib.sha1(files.encode()).hexdigest()[:10]
    return (
        work
        / "mslong"
        / f"trained_{tag}"
        / f"{patient}_{'own' if spacing is None else f'{spacing:g}mm'}.nii.gz"
    )


def mslong_rows(work: Path, root: Path, spacing: float, weights: list[Path]) -> list[dict]:
    """The baseline for every pair at ``spacing``; with ``weights``, the trained model at its own spacing."""
    rows: list[tuple[str, list[Path], float | None]] = [(BASELINE, [], spacing)]
    if weights:
        rows.append((f"mslong, {' + '.join(str(path) for path in weights)}", weights, None))
    return [
        mslong_record(method, patient, paths, _mask_path(work, patient, paths, grid), root, grid)
        for method, paths, grid in rows
        for patient in PATIENTS
    ]


def _cell(value: float, digits: int = 3) -> str:
    """A score; NaN (0/0: no lesion on that side) shows as 0 with a mark, as the means count it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "0 (NaN)"
    return f"{value:.{digits}f}"


def _mean_row(rows: pd.DataFrame) -> dict:
    """Mean over the pairs; a NaN score counts as 0 (a method without a lesion on a pair)."""
    means = {column: float(rows[column].fillna(0.0).mean()) for column in (*COLUMNS, "fp_lesions", "seconds")}
    return {"method": rows["method"].iloc[0], "patient": f"mean of {len(rows)}", **means}


def _nan_scores(table: pd.DataFrame) -> int:
    """NaN scores of the rows that were scored (a row with a note ran no scoring)."""
    scored = table[table["note"].isna()] if "note" in table else table
    return int(scored[list(COLUMNS)].isna().to_numpy().sum())


def markdown_table(table: pd.DataFrame) -> str:
    """One markdown table: every method's pairs, then its mean where it ran on every pair."""
    lines = ["| method | pair | Dice | lesion F1 | sensitivity | precision | FP lesions | wall time (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for _, rows in table.groupby("method", sort=False):
        scored = rows[rows["note"].isna()] if "note" in rows else rows
        for row in rows.to_dict("records"):
            if isinstance(row.get("note"), str):
                cells = ["—"] * 5 + [f"{row['note']}"]
            else:
                cells = [
                    *(_cell(row[c]) for c in COLUMNS),
                    f"{row['fp_lesions']:.0f}",
                    f"{row['seconds']:.0f}",
                ]
            lines.append(f"| {row['method']} | {row['patient']} | {' | '.join(cells)} |")
        if len(scored) == len(PATIENTS):
            mean = _mean_row(scored)
            cells = [
                *(_cell(mean[c]) for c in COLUMNS),
                f"{mean['fp_lesions']:.1f}",
                f"{mean['seconds']:.0f}",
            ]
            lines.append(f"| {mean['method']} | **{mean['patient']}** | {' | '.join(cells)} |")
    return "\n".join(lines)


def figure_slices(reference: np.ndarray, count: int = 3) -> list[int]:
    """Axial slices (RAS z) through the largest reference lesions: each one's fullest slice, distinct."""
    labels, n = label_lesions(reference, (1.0, 1.0, 1.0), min_volume_mm3=0.0)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    chosen: list[int] = []
    for label in np.argsort(-sizes, kind="stable") + 1:
        index = int(np.argmax((labels == label).sum(axis=(0, 1))))
        if index not in chosen:
            chosen.append(index)
        if len(chosen) == count:
            break
    return sorted(chosen)


def _window(image: np.ndarray, brain: np.ndarray) -> tuple[float, float]:
    values = image[brain] if brain.any() else image
    return float(np.percentile(values, 1)), float(np.percentile(values, 99.5))


def _crop(brain: np.ndarray, margin: int = 8) -> tuple[slice, slice]:
    """Rows and columns of the displayed slice images that hold the brain (any slice)."""
    shown = slice_image(brain.any(axis=2, keepdims=True), "axial", 0)
    rows, columns = np.flatnonzero(shown.any(axis=1)), np.flatnonzero(shown.any(axis=0))
    if not len(rows):
        return slice(None), slice(None)
    return (slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
            slice(max(columns[0] - margin, 0), columns[-1] + margin + 1))  # fmt: skip


def _draw(axis: plt.Axes, image: np.ndarray, window: tuple[float, float], overlays: list[tuple]) -> None:
    """The slice, then each (mask, colour, filled): outlined, and shaded where filled (small lesions show)."""
    axis.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
    for mask, colour, filled in overlays:
        if not mask.any():
            continue
        if filled:
            shade = np.zeros((*mask.shape, 4))
            shade[mask] = matplotlib.colors.to_rgba(colour, 0.45)
            axis.imshow(shade, interpolation="nearest")
        axis.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=0.9)
    axis.set_xticks([])
    axis.set_yticks([])


def pair_figure(patient: str, root: Path, predictions: dict[str, np.ndarray], titles: dict[str, str],
                path: Path) -> Path:  # fmt: skip
    """t0, t1, reference and each method's new lesions on the same axial slices through reference lesions."""
    folder = root / "longitudinal" / patient
    reference_img = _reference(patient, folder.parent.parent)
    affine = reference_img.affine
    canon = lambda volume: to_canonical_array(np.asarray(volume), affine)[0]  # noqa: E731
    t0, t1 = (canon(nib.load(folder / name).get_fdata(dtype=np.float32)) for name in TIME_POINTS)
    brain = canon(np.asarray(nib.load(folder / "brain_mask.nii.gz").dataobj) > 0)
    reference = canon(np.asarray(reference_img.dataobj) > 0)
    masks = {name: canon(mask) for name, mask in predictions.items()}
    windows, crop = (_window(t0, brain), _window(t1, brain)), _crop(brain)
    slices = figure_slices(reference)
    columns = 3 + len(masks)
    figure, axes = plt.subplots(len(slices), columns, figsize=(2.6 * columns, 3.3 * len(slices) + 0.6),
                                squeeze=False)  # fmt: skip
    for row, index in enumerate(slices):
        view = lambda volume, index=index: slice_image(volume, "axial", index)[crop]  # noqa: E731
        ref = view(reference)
        panels = [(view(t0), windows[0], [], "t0 (baseline)"), (view(t1), windows[1], [], "t1 (follow-up)"),
                  (view(t1), windows[1], [(ref, GT_COLOUR, True)], f"reference ({int(ref.sum())} px)")]  # fmt: skip
        for name, mask in masks.items():
            shown = view(mask)
            outlines = [(ref, GT_COLOUR, False), (shown, PRED_COLOUR, True)]
            panels.append((view(t1), windows[1], outlines, f"{titles[name]} ({int(shown.sum())} px)"))
        for axis, (image, window, outlines, title) in zip(axes[row], panels, strict=True):
            _draw(axis, image, window, outlines)
            axis.set_title(title, fontsize=8)
        axes[row, 0].set_ylabel(f"axial slice {index}", fontsize=8)
    figure.suptitle(f"{patient}: new lesions on the follow-up (green: reference, red: method); "
                    "slices through the largest reference lesions", fontsize=9)  # fmt: skip
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _mslong_mask(work: Path, patient: str, spacing: float) -> np.ndarray:
    return np.asarray(nib.load(_mask_path(work, patient, [], spacing)).dataobj) > 0


def write_figures(table: pd.DataFrame, samseg_masks: dict[str, np.ndarray], args: argparse.Namespace) -> None:
    """One figure per pair: the mslong baseline and SAMSEG cross-sectional, titled with their lesion F1."""
    for patient in PATIENTS:
        f1 = table[table["patient"] == patient].set_index("method")["f1"].fillna(0.0)
        predictions = {"mslong": _mslong_mask(args.work, patient, args.spacing)}
        titles = {"mslong": f"mslong baseline, F1 {f1[BASELINE]:.2f}"}
        if patient in samseg_masks:
            predictions["samseg"] = samseg_masks[patient]
            titles["samseg"] = f"SAMSEG t1 − t0, F1 {f1[SAMSEG]:.2f}"
        print(pair_figure(patient, args.root, predictions, titles, args.figure / f"peers_{patient}.png"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the ljubljana folder (longitudinal/)")
    parser.add_argument(
        "--work", type=Path, required=True, help="SAMSEG outputs and mslong masks; reruns reuse them"
    )
    parser.add_argument("--samseg-bin", type=Path, default=None,
                        help="folder of run_samseg and run_samseg_long (default: run_samseg's on PATH)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="SAMSEG runs at once, one thread each")
    parser.add_argument(
        "--long-pair", default=PATIENTS[0], choices=PATIENTS, help="the pair run_samseg_long tries"
    )
    parser.add_argument("--long-timeout", type=float, default=1800.0, help="seconds run_samseg_long may take")
    parser.add_argument(
        "--weights", type=Path, nargs="+", default=[], help="a trained mslong model: one more row"
    )
    parser.add_argument(
        "--spacing", type=float, default=1.0, help="mslong's segmentation spacing, mm (its default)"
    )
    parser.add_argument("--figure", type=Path, default=None, help="write peers_<pair>.png here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    bin_dir = samseg_bin(args.samseg_bin)
    started = time.perf_counter()
    jobs = samseg_jobs(args.root, args.work, bin_dir, args.long_pair, args.long_timeout)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        statuses = list(pool.map(run_job, jobs))
    samseg_seconds = time.perf_counter() - started
    records = mslong_rows(args.work, args.root, args.spacing, args.weights)
    peer_records, samseg_masks = samseg_records(jobs, statuses, args.root, args.long_pair)
    table = pd.DataFrame(records + peer_records)
    table.to_csv(args.work / "scores.csv", index=False)
    print(f"\n## mslong and SAMSEG on the real pairs ({', '.join(PATIENTS)}), co-registered, MSSEG-2 rules\n")
    print(markdown_table(table))
    print(f"\nA score of 0/0 (NaN: no lesion on that side) shows as '0 (NaN)'; the means count it as 0 "
          f"({_nan_scores(table)} such scores here).")  # fmt: skip
    if args.figure:
        write_figures(table, samseg_masks, args)
    print(f"\nbench_peers: {time.perf_counter() - started:.0f} s (SAMSEG stage {samseg_seconds:.0f} s)")


if __name__ == "__main__":
    main()
