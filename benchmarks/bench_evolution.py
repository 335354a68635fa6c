"""Does a pseudo baseline show where its lesions were erased? Texture and level of the fill, one table.

For each single-time-point case under ``--root`` (a folder per case holding ``FLAIR.nii.gz`` and
``consensus.nii.gz``, e.g. the Ljubljana cross-sectional scans), the simulation of
``slicer export --simulate-evolution`` (same seed rule: ``--seed``, its drift, t0 re-acquired)
makes a pseudo t0, then the table compares, inside the erased lesions and in a shell of tissue
1-3 mm around them (outside every consensus lesion, inside the head):

- roughness: the mean absolute 2D Laplacian over the axial slices of the pseudo t0;
- the mean intensity of the pseudo t0.

A ratio near 1 means the fill has the texture and level of the tissue around it. Away from the
lesions (the head beyond ``SHELL_MM[1]`` of any), the last two columns compare the pseudo t0
with the real scan: the ratio of their roughness, and the correlation of their Laplacians (1 when
t0 shares t1's noise; two real sessions share their anatomy's edges only).

    python benchmarks/bench_evolution.py --root ../shared/data/ljubljana/cross_sectional \\
        [--seed 0] [--figure docs/img/evolution.png]

``--figure`` writes one axial slice (the one with most erased voxels): t1 | pseudo t0 | t1 - t0,
the erased lesions outlined in yellow and the grown ones in cyan, the whole slice and a zoom.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from runtime.lesions import label_lesions
from simulation.evolution import simulate_evolution
from slicer.export import EVOLUTION_DRIFT
from slicer.io import load_mask, load_volume, spacing_of
from slicer.normalise import head_mask

SHELL_MM = (1.0, 3.0)
_LAPLACIAN_2D = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)


def axial_roughness(volume: np.ndarray, axial_axis: int) -> np.ndarray:
    """Absolute 2D Laplacian of every axial slice (the slices across ``axial_axis``)."""
    kernel = np.expand_dims(_LAPLACIAN_2D, axial_axis)
    return np.abs(ndimage.correlate(volume.astype(np.float32), kernel, mode="reflect"))


def shell(
    region: np.ndarray, lesions: np.ndarray, head: np.ndarray, spacing: tuple[float, ...]
) -> np.ndarray:
    """Head voxels ``SHELL_MM`` around ``region`` that are in no lesion."""
    distance = ndimage.distance_transform_edt(~region, sampling=spacing)
    return (distance > SHELL_MM[0]) & (distance <= SHELL_MM[1]) & ~lesions & head


def measure(
    t0: np.ndarray,
    t1: np.ndarray,
    new: np.ndarray,
    consensus: np.ndarray,
    spacing: tuple[float, ...],
    axial_axis: int,
) -> dict[str, float]:
    """Roughness and mean intensity of ``t0`` inside the erased lesions and in the shell around;
    roughness and Laplacian correlation of ``t0`` against ``t1`` away from every lesion."""
    inside, head = new > 0, head_mask(t0)
    around = shell(inside, consensus > 0, head, spacing)
    far = head & (ndimage.distance_transform_edt(consensus == 0, sampling=spacing) > SHELL_MM[1])
    rough = axial_roughness(t0, axial_axis)
    laplacians = [ndimage.correlate(v.astype(np.float32), np.expand_dims(_LAPLACIAN_2D, axial_axis))[far]
                  for v in (t0, t1)]  # fmt: skip
    other_axes = tuple(a for a in range(3) if a != axial_axis)
    return {
        "slices": int(inside.any(axis=other_axes).sum()),
        "rough_in": float(rough[inside].mean()),
        "rough_shell": float(rough[around].mean()),
        "level_in": float(t0[inside].mean()),
        "level_shell": float(t0[around].mean()),
        "grain": float(rough[far].mean() / np.abs(laplacians[1]).mean()),
        "correlation": float(np.corrcoef(*laplacians)[0, 1]),
    }


def axial_axis_of(affine: np.ndarray) -> int:
    """The array axis that runs inferior-superior."""
    return [code in "SI" for code in nib.aff2axcodes(affine)].index(True)


def figure(
    path: Path, t1: np.ndarray, t0: np.ndarray, new: np.ndarray, grown: np.ndarray, axial_axis: int
) -> None:
    """t1 | pseudo t0 | t1 - t0 on the axial slice with most erased voxels, whole and zoomed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    other_axes = tuple(a for a in range(3) if a != axial_axis)
    index = int(np.argmax(new.sum(axis=other_axes)))
    planes = [np.take(v, index, axis=axial_axis).T for v in (t1, t0, t1 - t0, new, grown)]
    head = np.argwhere(planes[0] > 0)
    whole = tuple(slice(int(a), int(b) + 1) for a, b in zip(head.min(axis=0), head.max(axis=0), strict=True))
    lesion = np.argwhere(planes[3] > 0).mean(axis=0).astype(int)
    zoom = tuple(slice(max(int(c) - 24, 0), int(c) + 24) for c in lesion)
    high = float(np.percentile(t1[t1 > 0], 99.5))
    fig, axes = plt.subplots(2, 3, figsize=(9, 6.4))
    for row, crop in enumerate((whole, zoom)):
        for column, title in enumerate(("t1 (real)", "pseudo t0", "t1 - t0")):
            ax = axes[row, column]
            style = {"cmap": "gray", "vmin": 0, "vmax": high} if column < 2 else {"cmap": "RdBu_r"}
            if column == 2:
                style |= {"vmin": -high / 3, "vmax": high / 3}
            ax.imshow(planes[column][crop], origin="lower", interpolation="nearest", **style)
            ax.contour(planes[3][crop], [0.5], colors="yellow", linewidths=0.7)
            ax.contour(planes[4][crop], [0.5], colors="cyan", linewidths=0.7)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="folder of cases (FLAIR + consensus)")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed of every case")
    parser.add_argument("--figure", type=Path, help="PNG of one slice of the case with most erased voxels")
    args = parser.parse_args()

    cases = sorted(p for p in args.root.iterdir() if (p / "FLAIR.nii.gz").is_file())
    header = f"{'case':<10} {'lesions':>7} {'erased':>6} {'grown':>5} {'slices':>6}  "
    print(
        header
        + f"{'|lap| in':>8} {'shell':>6} {'ratio':>5}  {'mean in':>7} {'shell':>6} {'ratio':>5}  "
        + f"{'t0/t1':>5} {'corr':>5}  {'s':>4}"
    )
    largest: tuple[int, tuple[np.ndarray, ...], int] | None = None
    for case in cases:
        t1, img = load_volume(case / "FLAIR.nii.gz")
        consensus, _ = load_mask(case / "consensus.nii.gz")
        spacing = spacing_of(img.affine)
        start = time.perf_counter()
        t0, new, evolution = simulate_evolution(
            t1, consensus, spacing, args.seed, drift=EVOLUTION_DRIFT, reacquire=True
        )
        seconds = time.perf_counter() - start
        labels, count = label_lesions(consensus, spacing)
        axis = axial_axis_of(img.affine)
        row = measure(t0, t1, new, consensus, tuple(spacing), axis)
        print(
            f"{case.name:<10} {count:>7} {len(evolution.removed):>6} {len(evolution.grown):>5} {row['slices']:>6}  "
            f"{row['rough_in']:>8.1f} {row['rough_shell']:>6.1f} {row['rough_in'] / row['rough_shell']:>5.2f}  "
            f"{row['level_in']:>7.1f} {row['level_shell']:>6.1f} {row['level_in'] / row['level_shell']:>5.2f}  "
            f"{row['grain']:>5.2f} {row['correlation']:>5.2f}  {seconds:>4.1f}"
        )
        if largest is None or int(new.sum()) > largest[0]:
            largest = (int(new.sum()), (t1, t0, new, np.isin(labels, evolution.grown)), axis)
    if args.figure is not None and largest is not None:
        figure(args.figure, *largest[1], largest[2])
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
