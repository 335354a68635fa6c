"""How visible the real pairs' new lesions are in the brightening a change detector reads.

For each real longitudinal pair of the Ljubljana database (``ROOT/longitudinal/patient01``,
``patient12``; co-registered scans, 1 mm, brain mask by deepbet, prepared as ``mslong segment``
prepares them), every reference lesion (``ground_truth.nii.gz``, 26-connected components on the
export grid) gets the highest robust z-score of the brightening inside it: the subtraction
baseline's map (:func:`fusion.baseline.brightening_maps`, smoothed 1.5 mm) and the same
difference unsmoothed. The table counts, per pair and per size, the lesions whose peak clears
the baseline's core threshold (8), its hysteresis level (4), and the brain's own 99.9th
percentile of the same map away from the reference (what one false voxel in a thousand
reaches): a lesion under that level cannot be told from the brain's change by its brightening
alone, whatever reads it.

    python benchmarks/bench_visibility.py --root ../shared/data/ljubljana
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import bench_real  # benchmarks/ is on sys.path when this script runs
import cc3d
import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from fusion.baseline import BASELINE_Z, HYSTERESIS, brightening_maps
from fusion.metrics import SIZE_BINS_MM3
from slicer.brain import brain_mask
from slicer.io import load_volume
from slicer.prepare import prepare_case

NOISE_PERCENTILE = 99.9  # of the map in the brain away from the reference


def lesion_peaks(patient: Path, spacing: float) -> pd.DataFrame:
    """One row per reference lesion: its volume and the peak of each map, with the brain's level."""
    t0, t0_img = load_volume(patient / bench_real.INPUTS["co-registered"][0])
    t1, t1_img = load_volume(patient / bench_real.INPUTS["co-registered"][1])
    truth = (np.asarray(nib.load(patient / "ground_truth.nii.gz").dataobj) > 0).astype(np.uint8)
    brain, _ = brain_mask("compute", t1, t1_img.affine, None, scan=patient)
    prepared = prepare_case(t1, t1_img, t0, t0_img, truth, brain=brain, spacing=spacing)
    t1n, t0n, roi = prepared.normalised["t1n"], prepared.normalised["t0n"], prepared.roi
    maps = {
        "smoothed": brightening_maps(t1n, t0n, spacing, roi)[0],
        "unsmoothed": brightening_maps(t1n, t0n, spacing, roi, sigma_mm=0.0)[0],
    }
    labels, count = cc3d.connected_components(prepared.mask > 0, connectivity=26, return_N=True)
    away = roi & ~ndimage.binary_dilation(labels > 0, iterations=3)
    index = np.arange(1, count + 1)
    rows = pd.DataFrame({"patient": patient.name, "volume_mm3": np.bincount(labels.ravel())[1:] * spacing**3})
    for name, volume in maps.items():
        rows[f"peak_{name}"] = ndimage.maximum(volume, labels, index)
        rows[f"noise_{name}"] = float(np.percentile(volume[away], NOISE_PERCENTILE))
    return rows


def visibility_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Lesions whose peak clears each level, per pair and per size bin."""
    edges = (0.0, *SIZE_BINS_MM3, np.inf)
    rows = rows.assign(size_mm3=pd.cut(rows["volume_mm3"], edges, right=False))
    counts = {
        "lesions": ("volume_mm3", "size"),
        f"smoothed > {BASELINE_Z:g}": ("peak_smoothed", lambda s: int((s > BASELINE_Z).sum())),
        f"smoothed > {HYSTERESIS * BASELINE_Z:g}": (
            "peak_smoothed",
            lambda s: int((s > HYSTERESIS * BASELINE_Z).sum()),
        ),
    }
    table = rows.groupby(["patient", "size_mm3"], observed=False).agg(**counts)
    for name in ("smoothed", "unsmoothed"):
        above = rows[f"peak_{name}"] > rows[f"noise_{name}"]
        table[f"{name} > brain's {NOISE_PERCENTILE:g}th pct"] = above.groupby(
            [rows["patient"], rows["size_mm3"]], observed=False
        ).sum()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the ljubljana folder (longitudinal/)")
    parser.add_argument("--spacing", type=float, default=1.0, help="export spacing in mm")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = pd.concat(
        [lesion_peaks(args.root / "longitudinal" / p, args.spacing) for p in bench_real.PATIENTS]
    )
    pd.set_option("display.width", 200)
    print("## Reference lesions whose brightening peak clears each level (co-registered, "
          f"{args.spacing:g} mm)")  # fmt: skip
    print(visibility_table(rows).to_string())
    print("\n## The brain's level away from the reference, per pair")
    print(rows.groupby("patient")[["noise_smoothed", "noise_unsmoothed"]].first().round(2).to_string())
    print("\n## Peak quartiles over each pair's lesions")
    print(
        rows.groupby("patient")[["peak_smoothed", "peak_unsmoothed"]]
        .quantile([0.25, 0.5, 0.75])
        .round(2)
        .to_string()
    )
    print(f"\nbench_visibility: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
