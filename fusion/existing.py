"""New, not old: drop fused lesions that were already hyperintense at baseline.

MSSEG-2 counts new lesions only. An old lesion can still change between two scans: it
enlarges, or it simply looks brighter at follow-up (another scanner, another contrast),
and a network that reads both scans after a short training marks it: most false positives
of a briefly trained network sit on old lesions. What tells a new lesion apart is the
baseline *at the lesion*: the tissue was normal at t0, so the follow-up's contrast is all new.

The rule, per fused lesion (6-connected component) on the export grid:

1. its contrast at follow-up: the 75th percentile of ``t1`` inside it minus the median of
   ``t1`` in a shell around it (from one voxel to ``shell_mm`` away, other fused lesions
   left out: a fragment beside a larger lesion is measured against tissue, not lesion);
2. its contrast at baseline: the same with ``t0`` (the upper quartile inside catches an
   enlarged lesion whose old core is a third of it);
3. it is *old* when the baseline contrast exceeds ``max_fraction`` of the follow-up
   contrast: a fifth of the lesion was already there.

Both contrasts are against the lesion's own surroundings, so a new lesion next to bright
cortex keeps a fraction near 0, and ``t0`` and ``t1`` only need a common scale (the
export matches t0 to t1 locally, :func:`slicer.prepare.prepare_case`). A fifth leaves room
for the noise and partial volume of a new lesion's baseline, which is normal tissue, while an
old lesion keeps most of its contrast at t0 (what the rule changes in the demo's scores:
docs/results.md). What the rule cannot see: a prediction on the new rim of an enlarging
lesion only (its baseline was normal tissue, fraction near 0) stays.

>>> import numpy as np
>>> t0 = np.full((24, 24, 24), 100, np.uint8); t1 = t0.copy()
>>> t0[4:8, 4:8, 4:8] = 180; t1[4:8, 4:8, 4:8] = 250       # old, brighter at follow-up
>>> t1[15:19, 15:19, 15:19] = 250                           # new
>>> kept = drop_existing_lesions(t1 > 200, t0, t1, spacing=1.0)
>>> bool(kept[16, 16, 16]), bool(kept[5, 5, 5])
(True, False)
"""

from __future__ import annotations

import cc3d
import numpy as np
from scipy import ndimage

__all__ = ["drop_existing_lesions", "baseline_fraction", "SHELL_MM", "MAX_BASELINE_FRACTION"]

SHELL_MM = 4.5  # outer radius of the surroundings a lesion's contrast is measured against
MAX_BASELINE_FRACTION = 0.2  # share of the follow-up contrast already there in an old lesion


def _ball(radius: float) -> np.ndarray:
    """Voxels whose centre lies within ``radius`` voxels of the central one."""
    reach = int(np.floor(radius))
    offsets = np.arange(-reach, reach + 1) ** 2
    return offsets[:, None, None] + offsets[None, :, None] + offsets[None, None, :] <= radius**2


def _grown_box(box: tuple[slice, ...], margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape, strict=True)
    )


def baseline_fraction(
    lesion: np.ndarray, t0: np.ndarray, t1: np.ndarray, outer: np.ndarray, fused: np.ndarray
) -> float:
    """Share of a lesion's follow-up contrast already present at baseline (see the module docstring).

    ``lesion``, ``outer`` (the lesion grown by the shell radius) and ``fused`` (every fused
    lesion) are boolean masks over ``t0``/``t1``. NaN when the lesion has no surroundings or is
    not brighter than them at follow-up.
    """
    shell = outer & ~ndimage.binary_dilation(lesion, _ball(1.0)) & ~fused
    if not shell.any():
        return float("nan")
    follow_up = float(np.percentile(t1[lesion], 75)) - float(np.median(t1[shell]))
    baseline = float(np.percentile(t0[lesion], 75)) - float(np.median(t0[shell]))
    return baseline / follow_up if follow_up > 0 else float("nan")


def drop_existing_lesions(
    mask: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    spacing: float,
    shell_mm: float = SHELL_MM,
    max_fraction: float = MAX_BASELINE_FRACTION,
    inside: np.ndarray | None = None,
) -> np.ndarray:
    """``mask`` (bool) without the lesions already hyperintense at baseline.

    Args:
        mask: fused new-lesion mask on the export grid.
        t0, t1: baseline and follow-up intensities on the same grid and a common scale (the
            export's uint8 channels or the normalised floats).
        spacing: isotropic voxel size in mm.
        shell_mm: outer radius of the surroundings each contrast is measured against.
        max_fraction: a lesion whose baseline contrast exceeds this share of its follow-up
            contrast is old and dropped.
        inside: where surroundings may be measured (the brain both scans acquired): scalp,
            skull or a field-of-view border next to a lesion say nothing of its baseline.
    """
    labels, count = cc3d.connected_components(np.ascontiguousarray(mask > 0), connectivity=6, return_N=True)
    if count == 0:
        return labels > 0
    structure = _ball(max(1.0, shell_mm / spacing))
    margin = structure.shape[0] // 2
    t0, t1 = t0.astype(np.float32, copy=False), t1.astype(np.float32, copy=False)
    outside = np.zeros(labels.shape, bool) if inside is None else ~inside.astype(bool)
    old = np.zeros(count + 1, dtype=bool)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        box = _grown_box(box, margin, labels.shape)
        lesion = labels[box] == index
        outer = ndimage.binary_dilation(lesion, structure) & ~outside[box]
        old[index] = baseline_fraction(lesion, t0[box], t1[box], outer, labels[box] > 0) > max_fraction
    return (labels > 0) & ~old[labels]
