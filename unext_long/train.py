"""Training UNeXt on a slicer export: AdamW, cosine schedule, AMP on CUDA, best/last checkpoints.

A run folder ``<project>/<name>/`` holds ``weights/best.pt`` (best slice-level validation Dice),
``weights/last.pt`` (also the optimiser and schedule, for ``--resume``) and ``results.csv`` (one
row per epoch). Checkpoints hold builtins and tensors only, so ``torch.load(weights_only=True)``
reads them; ``config`` is a JSON string describing the model (see :func:`save_checkpoint`).

Under torchrun (``torchrun --nproc_per_node N -m unext_long train ...``) the ranks train one
model with DDP (:mod:`unext_long.distributed`): each draws its share of the epoch's slices and
validates its share of the val split, the sums are added over the ranks, and rank 0 alone writes
the run folder, which looks exactly like a single-process one (and resumes in either mode).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, get_worker_info
from tqdm import tqdm

from runtime.devices import select_device
from runtime.errors import InputError
from runtime.files import atomic_path
from slicer.dataset_yaml import list_images, read_export_yaml
from unext_long import distributed
from unext_long.data import (
    Augment,
    LesionSampler,
    SliceDataset,
    epoch_seed,
    lesion_flags,
    pad_collate,
)
from unext_long.distributed import Ranks
from unext_long.losses import LossFn, build_loss
from unext_long.model import UNeXt, create_model
from unext_long.options import TrainOptions

__all__ = ["TrainOptions", "TrainResult", "train", "seed_everything", "save_checkpoint"]

RESULTS_FIELDS = ("epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds")


@dataclass
class TrainResult:
    """Where a run wrote its files and how well it did."""

    run_dir: Path
    best_dice: float
    best_epoch: int
    epochs: int
    seconds: float


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - global state, for libraries that still use it
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    # DataLoader gives each worker its own torch seed (from the loader's generator): derive the rest.
    info = get_worker_info()
    seed = info.seed % 2**32
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - global state, for libraries that still use it
    info.dataset.augment.reseed(seed)


def cosine_lr(base: float, epoch: int, epochs: int, final_ratio: float = 0.01) -> float:
    """Cosine decay from ``base`` (epoch 0) to ``base * final_ratio`` (after the last epoch)."""
    progress = min(epoch / max(epochs, 1), 1.0)
    return base * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def save_checkpoint(path: Path, model: UNeXt, config: dict, **state: object) -> None:
    """Write ``{"state_dict", "config" (JSON string), **state}`` atomically (weights_only-safe)."""
    payload = {"state_dict": model.state_dict(), "config": json.dumps(config), **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _subset(images: list[Path], max_slices: int | None, seed: int) -> list[Path]:
    if max_slices is None or max_slices >= len(images):
        return images
    keep = np.random.default_rng(seed).choice(len(images), max_slices, replace=False)
    return [images[i] for i in sorted(keep)]


def _prepare_run_dir(options: TrainOptions, ranks: Ranks) -> Path:
    # Every rank checks (so all raise alike), rank 0 alone changes the folder, the others wait for it.
    run_dir = Path(options.project) / options.name
    last = run_dir / "weights" / "last.pt"
    if options.resume and not last.is_file():
        raise InputError(last, "not found, nothing to resume")
    if not options.resume and last.exists() and not options.overwrite:
        raise InputError(run_dir, "holds a training run; pass --resume to continue it or --overwrite")
    if ranks.main:
        if not options.resume and last.exists():
            shutil.rmtree(run_dir)
        (run_dir / "weights").mkdir(parents=True, exist_ok=True)
    distributed.barrier()
    return run_dir


def _train_epoch(
    model: torch.nn.Module, loader: DataLoader, loss_fn: LossFn, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, device: torch.device, desc: str | None,
) -> tuple[float, int]:  # fmt: skip
    """Train one epoch; the summed loss and the slice count (``desc=None``: no progress bar)."""
    model.train()
    total, count = 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=desc is None)
    for images, masks, valid in bar:
        images, masks, valid = (t.to(device, non_blocking=True) for t in (images, masks, valid))
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits = model(images)
        loss = loss_fn(logits.float(), masks, valid)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total, count = total + float(loss.detach()) * len(images), count + len(images)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total, count


@torch.no_grad()
def evaluate(model: UNeXt, loader: DataLoader, loss_fn: LossFn, device: torch.device) -> tuple[float, float]:
    """Mean loss and slice-level Dice (prediction > 0.5, pooled over every pixel of the split).

    Under DDP each rank passes its share of the split: the sums are added over the ranks first.
    """
    model.eval()
    total, count, overlap, predicted, truth = 0.0, 0, 0.0, 0.0, 0.0
    for images, masks, valid in loader:
        images, masks, valid = (t.to(device) for t in (images, masks, valid))
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits = model(images).float()
        total, count = total + float(loss_fn(logits, masks, valid)) * len(images), count + len(images)
        binary = (logits > 0).float() * valid
        overlap += float((binary * masks).sum())
        predicted, truth = predicted + float(binary.sum()), truth + float((masks * valid).sum())
    total, count, overlap, predicted, truth = distributed.all_sum(
        [total, count, overlap, predicted, truth], device
    )
    dice = 2 * overlap / (predicted + truth) if predicted + truth > 0 else 1.0
    return total / max(count, 1), dice


def _read_results(path: Path, before_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if int(row["epoch"]) < before_epoch]


def _write_results(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, RESULTS_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def train(options: TrainOptions) -> TrainResult:
    """Train (or resume) a run and return where it wrote its checkpoints (on every DDP rank).

    Raises:
        InputError: bad dataset YAML or images, a stem the channel groups cannot feed, a run folder
            that already holds a run (without ``resume``/``overwrite``), a batch the ranks cannot share.
    """
    ranks = distributed.from_environment()
    device = select_device(options.device, ranks.local_rank if ranks.distributed else None)
    if options.batch % ranks.world_size:
        raise InputError(
            "--batch", f"{options.batch} does not split evenly over {ranks.world_size} processes"
        )
    distributed.start(ranks, device)
    try:
        return _train(options, ranks, device)
    finally:
        distributed.finish()


def _epoch_loader(
    train_set: SliceDataset, sampler: LesionSampler, options: TrainOptions, ranks: Ranks, device: torch.device
) -> DataLoader:
    # The sampler's draw is shared by the ranks; augmentation and worker seeds differ per rank.
    seed = epoch_seed(options.seed, sampler.epoch) * ranks.world_size + ranks.rank
    train_set.augment.reseed(seed)
    batch = options.batch // ranks.world_size
    return DataLoader(
        train_set, batch, sampler=sampler, num_workers=options.workers, collate_fn=pad_collate,
        worker_init_fn=_seed_worker, generator=torch.Generator().manual_seed(seed),
        pin_memory=device.type == "cuda", drop_last=len(sampler) > batch,
    )  # fmt: skip


def _train(options: TrainOptions, ranks: Ranks, device: torch.device) -> TrainResult:
    info = read_export_yaml(options.data)
    run_dir = _prepare_run_dir(options, ranks)
    seed_everything(options.seed)
    if "val" not in info.splits:
        raise InputError(info.yaml_path, "names no val split")
    train_images = _subset(list_images(info.splits["train"]), options.max_slices, options.seed)
    val_images = _subset(list_images(info.splits["val"]), options.max_slices, options.seed)
    try:
        model = create_model(
            options.size, in_channels=info.channels, stem=options.stem, channel_groups=info.channel_groups
        ).to(device)
    except ValueError as error:
        raise InputError(info.yaml_path, str(error)) from None
    loss_fn = build_loss(options.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    config = {
        "model": options.size, "in_channels": info.channels, "num_classes": 1, "stem": options.stem,
        "channel_groups": info.channel_groups, "recipe": info.recipe, "imgsz": options.imgsz,
        "data": str(info.yaml_path), "loss": options.loss, "seed": options.seed,
    }  # fmt: skip
    config["export"] = info.export
    start, epochs, best_dice, best_epoch = 0, options.epochs, -1.0, -1
    if options.resume:
        last = torch.load(run_dir / "weights" / "last.pt", map_location=device, weights_only=True)
        model.load_state_dict(last["state_dict"])
        optimizer.load_state_dict(last["optimizer"])
        start = int(last["epoch"]) + 1
        best_dice, best_epoch = float(last["best_dice"]), int(last["best_epoch"])
    trained = distributed.wrap(model, ranks, device)  # `model` stays the bare UNeXt: saved and validated

    augment = Augment(options.imgsz, info.channel_groups, options.seed)
    train_set = SliceDataset(train_images, info.channels, augment)
    sampler = LesionSampler(
        lesion_flags(train_images), options.lesion_fraction, options.seed, ranks.world_size, ranks.rank
    )
    val_loader = DataLoader(
        SliceDataset(val_images[ranks.rank :: ranks.world_size], info.channels),
        options.batch // ranks.world_size,
        num_workers=options.workers,
        collate_fn=pad_collate,
    )
    results = run_dir / "results.csv"
    rows = _read_results(results, start)
    began = time.monotonic()
    for epoch in itertools.count(start):
        if epoch >= epochs:  # epochs may shrink under a time limit
            break
        tick = time.monotonic()
        lr = cosine_lr(options.lr, epoch, epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        sampler.set_epoch(epoch)
        loader = _epoch_loader(train_set, sampler, options, ranks, device)
        desc = f"epoch {epoch + 1}/{epochs}" if ranks.main else None
        total, count = distributed.all_sum(
            _train_epoch(trained, loader, loss_fn, optimizer, scaler, device, desc), device
        )
        train_loss = total / max(count, 1)
        distributed.sync_buffers(model)
        val_loss, val_dice = evaluate(model, val_loader, loss_fn, device)
        seconds = time.monotonic() - tick
        if val_dice > best_dice:
            best_dice, best_epoch = val_dice, epoch
            if ranks.main:
                save_checkpoint(
                    run_dir / "weights" / "best.pt", model, {**config, "epoch": epoch, "best_dice": val_dice}
                )
        if options.time_limit is not None:
            # Shorten the schedule so the cosine decay ends within the time limit (rank 0's clock
            # decides), at the mean pace so far: one epoch slowed by another job must not cut it.
            spent = time.monotonic() - began
            left, pace = options.time_limit * 60 - spent, spent / (epoch + 1 - start)
            epochs = distributed.from_main(min(epochs, epoch + 1 + max(int(left / pace), 0)), device)
        if not ranks.main:
            continue
        save_checkpoint(
            run_dir / "weights" / "last.pt", model, {**config, "epoch": epoch, "best_dice": best_dice},
            optimizer=optimizer.state_dict(), epoch=epoch, epochs=epochs, best_dice=best_dice, best_epoch=best_epoch,
        )  # fmt: skip
        rows.append(dict(zip(RESULTS_FIELDS, (epoch, f"{train_loss:.5f}", f"{val_loss:.5f}", f"{val_dice:.4f}", f"{lr:.3g}", f"{seconds:.1f}"), strict=True)))  # fmt: skip
        _write_results(results, rows)
        tqdm.write(
            f"epoch {epoch + 1}/{epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, val Dice {val_dice:.4f}"
        )
    result = TrainResult(run_dir, best_dice, best_epoch, epochs, time.monotonic() - began)
    if ranks.main:
        print(
            f"trained {options.size} ({options.stem} stem, {info.channels} channels) to epoch {epochs} in "
            f"{result.seconds:.0f} s: best val Dice {best_dice:.4f} at epoch {best_epoch + 1} -> {run_dir / 'weights'}"
        )
    return result
