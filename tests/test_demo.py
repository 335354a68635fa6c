"""``mslong demo`` wires every stage together: a miniature run gives every row of the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mslong.demo import BASELINES, METHODS, run_demo
from mslong.options import DemoOptions


def test_miniature_demo_scores_every_method(tmp_path: Path) -> None:
    options = DemoOptions(
        out=tmp_path / "demo",
        cases=4,
        voxel=3.0,
        val_cases=2,
        unext_epochs=1,
        yolo_epochs=1,
        yolo_imgsz=64,
        val_slices=16,
        device="cpu",
    )
    report = run_demo(options)

    assert list(report.index) == [*BASELINES, *(method.name for method in METHODS)]
    assert list(report.columns) == ["Dice", "F1", "sensitivity", "precision", "FP lesions / empty case"]
    # One validation case has no new lesion: every method reports its false positives there.
    assert np.isfinite(report["FP lesions / empty case"]).all()
    assert (options.out / "results.md").read_text().count("triplanar") >= 3
    figures = options.out / "evaluation" / "UNeXt_and_YOLO_lead" / "figures"
    assert (figures / "scores.png").is_file() and len(list(figures.glob("case*.png"))) == 2
    # Re-running reuses every finished step (trained weights are kept, not retrained), and remakes
    # a fused folder an earlier mslong made with another record instead of refusing it.
    weights = options.out / "runs" / "unext" / "weights" / "best.pt"
    stamp = weights.stat().st_mtime_ns
    record = options.out / "results" / "UNeXt_and_YOLO_lead" / "provenance.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "roles": [None, "confirm"]}))
    again = run_demo(options)
    assert weights.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again, report)
    assert "roles" not in json.loads(record.read_text())
