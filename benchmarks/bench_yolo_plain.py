"""The plain ultralytics command against the demo's YOLO, on the demo's own export.

Runs, in a scratch folder, exactly what a new user types after ``make demo``, in the two forms
ultralytics offers::

    yolo-long init --data demo_output/export/phantom_long.yaml --out plain.pt
    yolo segment train data=demo_output/export/phantom_long.yaml model=plain.pt epochs=10
    yolo segment train cfg=plain.train.yaml epochs=10

(``init`` writes ``plain.train.yaml``, the ``cfg=`` file), then scores every checkpoint the same
way: mask mAP50 on every validation slice (``yolo segment val``), and the triplanar masks of
``reassemble`` without ``--threshold`` (each folder at its own operating point), by the MSSEG-2
rules against the consensus.

    python benchmarks/bench_yolo_plain.py --demo demo_output [--forms cfg]

ultralytics writes each run where its settings say (``runs_dir``), as for any user; the runs are
listed in ``WORK/runs.json``, and ``--reuse`` scores the listed runs again without training.
"""

from __future__ import annotations

import argparse
import json
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


# The training arguments of each form (the scratch folder holds plain.pt and plain.train.yaml).
FORMS = {
    "data": lambda data: [f"data={data}", "model=plain.pt"],
    "cfg": lambda data: ["cfg=plain.train.yaml"],
}


def _train_plain(data: Path, work: Path, form: str, epochs: int) -> tuple[Path, float]:
    work.mkdir(parents=True, exist_ok=True)
    _run(str(BIN / "yolo-long"), "init", "--data", str(data), "--out", "plain.pt", "--overwrite", cwd=work)
    start = time.perf_counter()
    _run(str(BIN / "yolo"), "segment", "train", *FORMS[form](data), f"epochs={epochs}", cwd=work)
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
    predict_folder(weights, export / "images" / "val", preds, overwrite=True)
    masks = work / "masks" / name
    reassemble(ReassembleOptions(slices=export, preds=[preds], out=masks, split="val", overwrite=True))
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
    parser.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS), help="which plain commands")
    parser.add_argument("--reuse", action="store_true", help="score the runs in WORK/runs.json, no training")
    args = parser.parse_args()
    demo, work = args.demo.resolve(), args.work.resolve()
    data = demo / "export" / "phantom_long.yaml"
    listing = work / "runs.json"
    runs = json.loads(listing.read_text()) if args.reuse else {}
    for form in args.forms:
        if form not in runs:
            weights, seconds = _train_plain(data, work, form, args.epochs)
            runs[form] = {"weights": str(weights), "seconds": seconds}
            listing.write_text(json.dumps(runs, indent=2))
    # row label -> (scratch sub-folder, checkpoint)
    checkpoints = {"demo's YOLO": ("demo", demo / "runs" / "yolo" / "weights" / "best.pt")}
    checkpoints |= {f"plain {form}=": (f"plain_{form}", Path(runs[form]["weights"])) for form in args.forms}
    rows = {}
    for label, (folder, weights) in checkpoints.items():
        rows[label] = {"mask mAP50": _map50(weights, data), **_fused_scores(weights, demo, work, folder)}
    table = pd.DataFrame(rows).T.rename_axis("YOLO")
    for form in args.forms:
        command = " ".join(FORMS[form]("DATA"))
        print(
            f"plain `yolo segment train {command} epochs={args.epochs}`: {runs[form]['seconds']:.0f} s of training"
        )
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
