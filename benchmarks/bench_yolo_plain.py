"""The plain ultralytics command against the demo's YOLO, on the demo's own export.

Runs, in a scratch folder, exactly what a new user types after ``make demo``::

    yolo-long init --data demo_output/export/phantom_long.yaml --out plain.pt
    yolo segment train data=demo_output/export/phantom_long.yaml model=plain.pt epochs=10

then scores both checkpoints the same way: mask mAP50 on every validation slice
(``yolo segment val``), and the triplanar masks of ``reassemble`` without ``--threshold``
(each folder at its own operating point), by the MSSEG-2 rules against the consensus.

    python benchmarks/bench_yolo_plain.py --demo demo_output

ultralytics writes the plain run where its settings say (``runs_dir``), as for any user;
``--reuse`` scores the latest such run again without training.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

BIN = Path(sys.executable).parent


def _run(*command: str, cwd: Path) -> None:
    subprocess.run(list(command), cwd=cwd, check=True)


def _latest_run() -> Path | None:
    """The newest ``segment/train*`` run in ultralytics' own runs folder (its settings say where)."""
    from ultralytics.utils import SETTINGS

    runs = Path(SETTINGS["runs_dir"]).glob("segment/train*/weights/best.pt")
    return max(runs, key=lambda path: path.stat().st_mtime, default=None)


def _train_plain(data: Path, work: Path, epochs: int, reuse: bool) -> tuple[Path, float]:
    if reuse and (best := _latest_run()) is not None:
        return best, float("nan")
    work.mkdir(parents=True, exist_ok=True)
    _run(str(BIN / "yolo-long"), "init", "--data", str(data), "--out", "plain.pt", "--overwrite", cwd=work)
    start = time.perf_counter()
    _run(
        str(BIN / "yolo"), "segment", "train", f"data={data}", "model=plain.pt", f"epochs={epochs}", cwd=work
    )
    return _latest_run(), time.perf_counter() - start


def _map50(weights: Path, data: Path) -> float:
    from ultralytics import YOLO

    import yolo_long.modules  # noqa: F401  (our layers, offline)

    return float(YOLO(str(weights)).val(data=str(data), plots=False, verbose=False, workers=0).seg.map50)


def _fused_scores(weights: Path, demo: Path, work: Path, name: str) -> dict[str, float]:
    from fusion.reassemble import ReassembleOptions, reassemble
    from mslong.demo import score_folder
    from yolo_long.predict import predict_folder

    export = demo / "export"
    preds = work / "preds" / name
    predict_folder(weights, export / "images" / "val", preds)
    masks = work / "masks" / name
    reassemble(ReassembleOptions(slices=export, preds=[preds], out=masks, split="val"))
    return score_folder(masks, demo / "phantom", work / "evaluation" / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--demo", type=Path, default=Path("demo_output"), help="a finished mslong demo folder"
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--work", type=Path, default=Path("benchmarks/output/yolo_plain"), help="scratch folder"
    )
    parser.add_argument("--reuse", action="store_true", help="score ultralytics' latest run, no training")
    args = parser.parse_args()
    demo, work = args.demo.resolve(), args.work.resolve()
    data = demo / "export" / "phantom_long.yaml"
    plain, seconds = _train_plain(data, work, args.epochs, args.reuse)
    rows = {}
    for name, weights in (("demo's YOLO", demo / "runs" / "yolo" / "weights" / "best.pt"), ("plain", plain)):
        rows[name] = {"mask mAP50": _map50(weights, data), **_fused_scores(weights, demo, work, name)}
    table = pd.DataFrame(rows).T.rename_axis("YOLO")
    print(
        f"\nplain `yolo segment train data=... model=... epochs={args.epochs}`: {seconds:.0f} s of training"
    )
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
