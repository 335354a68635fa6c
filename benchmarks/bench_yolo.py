"""Benchmark yolov9t-seg-long: training and prediction images/s, mask mAP50 and pooled slice Dice.

Makes a small phantom (simulation.phantom), exports it (slicer.export), trains a siamese-stem
yolov9t-seg-long for a short budget, then predicts the val slices and scores the PNGs
against the exported masks. One row per device (CPU, plus CUDA when available).

    python benchmarks/bench_yolo.py                       # 10 epochs at imgsz 224 on 1.5 mm slices
    python benchmarks/bench_yolo.py --epochs 2 --cases 4  # a quick throughput check
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import tifffile


def _dataset(work: Path, cases: int, voxel: float) -> Path:
    from simulation.phantom import write_phantom
    from slicer.export import ExportOptions, export_dataset

    write_phantom(work / "phantom", cases=cases, voxel=voxel, seed=0)
    options = ExportOptions(
        dataset="phantom", root=work / "phantom", out=work / "export", spacing=voxel, val_fraction=0.3, seed=0,
        drop_empty_fraction=0.8,
    )  # fmt: skip
    export_dataset(options)
    return work / "export" / "phantom_long.yaml"


def _pooled_dice(preds: list[np.ndarray], masks: list[np.ndarray], threshold: float = 0.5) -> float:
    hits = sum(int(np.sum((p >= threshold) & (m > 127))) for p, m in zip(preds, masks, strict=True))
    total = sum(int(np.sum(p >= threshold)) + int(np.sum(m > 127)) for p, m in zip(preds, masks, strict=True))
    return 2 * hits / total if total else 1.0


def _row(data: Path, work: Path, device: str, args: argparse.Namespace) -> dict[str, float | str]:
    from ultralytics import YOLO

    from yolo_long.build import init_checkpoint, train_config_path
    from yolo_long.predict import load_model, predict_images

    export = data.parent
    n_train = len(list((export / "images" / "train").glob("*.tif")))
    init = init_checkpoint(
        args.model, "siamese", data, work / f"init-{device}.pt", imgsz=args.imgsz, overwrite=True
    )
    start = time.perf_counter()
    YOLO(str(init)).train(
        cfg=str(train_config_path(init)),  # the settings yolo-long init recommends, as mslong demo trains
        data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, workers=0, device=device,
        plots=False, val=False, project=str(work / "runs"), name=device, exist_ok=True, verbose=False, seed=0,
    )  # fmt: skip
    train_ips = args.epochs * n_train / (time.perf_counter() - start)
    best = work / "runs" / device / "weights" / "last.pt"
    map50 = YOLO(str(best)).val(data=str(data), imgsz=args.imgsz, batch=args.batch, device=device, plots=False,
                                verbose=False, workers=0).seg.map50  # fmt: skip

    val = sorted((export / "images" / "val").glob("*.tif"))
    images = [tifffile.imread(p) for p in val]
    masks = [cv2.imread(str(export / "masks" / "val" / f"{p.stem}.png"), cv2.IMREAD_UNCHANGED) for p in val]
    model = load_model(best, device)
    start = time.perf_counter()
    preds = list(predict_images(model, images, imgsz=args.imgsz, batch=args.batch, device=device))
    predict_ips = len(images) / (time.perf_counter() - start)
    return {"device": device, "train img/s": train_ips, "predict img/s": predict_ips, "mask mAP50": map50,
            "Dice (pooled)": _pooled_dice(preds, masks), "train/val slices": f"{n_train}/{len(val)}"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="yolov9t-seg-long")
    parser.add_argument("--epochs", type=int, default=10, help="training budget (default: 10)")
    parser.add_argument("--imgsz", type=int, default=224, help="lesions of a few pixels need upsampling")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--voxel", type=float, default=1.5, help="phantom voxel size in mm (default: 1.5)")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = _dataset(work, args.cases, args.voxel)
        devices = ["cpu"] + (["0"] if torch.cuda.is_available() else [])
        rows = [_row(data, work, device, args) for device in devices]
    print(
        f"\n{args.model}, siamese stem, {args.epochs} epochs at imgsz {args.imgsz}, phantom {args.voxel} mm"
    )
    print(" | ".join(rows[0]))
    for row in rows:
        print(" | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()))


if __name__ == "__main__":
    main()
