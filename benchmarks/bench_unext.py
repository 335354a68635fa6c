"""UNeXt speed and accuracy: training/prediction throughput and the Dice reached on a phantom export.

Prints two tables:
1. slices/s for a training step (forward, backward, AdamW) and for prediction, at 256x256, batch 8,
   9 input channels, on the CPU with ``--threads`` threads (and on the GPU when CUDA is available);
2. the slice-level validation Dice reached on a small phantom export (``simulation.phantom`` ->
   ``slicer.export``) within ``--minutes`` of CPU training.

Goals: >= 8.5 training slices/s on 2 CPU cores (the reference code's speed), Dice >= 0.6.

    python benchmarks/bench_unext.py --minutes 10
    python benchmarks/bench_unext.py --minutes 1 --skip-throughput   # a quick accuracy check
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from unext_long.model import create_model

GROUPS = {"t1": [0, 1, 2], "t0": [3, 4, 5], "diff": [6, 7, 8]}
VARIANTS = (("unext", "early"), ("unext", "siamese"), ("unext-s", "early"))


def throughput(
    size: str, stem: str, device: torch.device, steps: int, batch: int = 8, side: int = 256
) -> tuple:
    """(training slices/s, prediction slices/s) on random 9-channel slices."""
    model = create_model(size, in_channels=9, stem=stem, channel_groups=GROUPS).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 9, side, side, device=device)
    y = (torch.rand(batch, 1, side, side, device=device) > 0.95).float()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step() -> None:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    rates = []
    for step, mode in ((train_step, model.train), (lambda: model(x), model.eval)):
        mode()
        with torch.set_grad_enabled(step is train_step):
            step()  # warm-up
            sync()
            tick = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
        rates.append(steps * batch / (time.perf_counter() - tick))
    return tuple(rates)


def phantom_dice(args: argparse.Namespace, work: Path) -> tuple[float, int, float, int]:
    """Train on a phantom export for ``args.minutes``; (best Dice, epochs, seconds, train slices)."""
    from simulation.phantom import write_phantom
    from slicer.dataset_yaml import list_images
    from slicer.export import ExportOptions, export_dataset
    from unext_long.train import TrainOptions, train

    write_phantom(work / "phantom", cases=args.cases, voxel=args.voxel, seed=0)
    export_dataset(
        ExportOptions(
            dataset="phantom", root=work / "phantom", out=work / "export", spacing=args.voxel, seed=0
        )
    )
    data = work / "export" / "phantom_long.yaml"
    options = TrainOptions(
        data, epochs=200, imgsz=args.imgsz, batch=8, device="cpu", stem=args.stem, size=args.size,
        time_limit=args.minutes, project=work / "runs", workers=args.workers, seed=0,
    )  # fmt: skip
    result = train(options)
    return (
        result.best_dice,
        result.epochs,
        result.seconds,
        len(list_images(work / "export" / "images" / "train")),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=5, help="timed batches per throughput row")
    parser.add_argument("--minutes", type=float, default=10.0, help="CPU training budget on the phantom")
    parser.add_argument("--cases", type=int, default=8, help="phantom cases (20%% go to validation)")
    parser.add_argument("--voxel", type=float, default=2.0, help="phantom and export spacing (mm)")
    parser.add_argument("--imgsz", type=int, default=96, help="training crop side on the phantom")
    parser.add_argument("--size", choices=("unext", "unext-s"), default="unext")
    parser.add_argument("--stem", choices=("early", "siamese"), default="siamese")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-phantom", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if not args.skip_throughput:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        print(
            f"| model | stem | device | train slices/s | predict slices/s |  (256x256, batch 8, {args.threads} threads)"
        )
        print("| --- | --- | --- | ---: | ---: |")
        for device in devices:
            steps = args.steps if device.type == "cpu" else 20 * args.steps
            for size, stem in VARIANTS:
                train_rate, predict_rate = throughput(size, stem, device, steps)
                print(
                    f"| {size} | {stem} | {device.type} | {train_rate:.1f} | {predict_rate:.1f} |", flush=True
                )

    if not args.skip_phantom:
        with tempfile.TemporaryDirectory(prefix="bench_unext_") as work:
            dice, epochs, seconds, slices = phantom_dice(args, Path(work))
        print(
            "| model | stem | phantom | train slices | budget | epochs | seconds | best val Dice (slice-level) |"
        )
        print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
        print(
            f"| {args.size} | {args.stem} | {args.cases} cases, {args.voxel:g} mm | {slices} | {args.minutes:g} min "
            f"| {epochs} | {seconds:.0f} | {dice:.3f} |"
        )


if __name__ == "__main__":
    main()
