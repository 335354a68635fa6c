"""Multi-process UNeXt training: torchrun's ranks, the process group, DDP and cross-rank sums.

``torchrun --nproc_per_node N -m unext_long train ...`` (or ``unext-long train --gpus N``, which
runs torchrun itself) starts N copies of the trainer; torchrun tells each its place through the
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` environment variables. Without them (a plain
``unext-long train``) every function here is a no-op for a single process, so the trainer has one
code path. Backend: NCCL on GPUs, gloo on CPUs (what the tests use).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "Ranks",
    "from_environment",
    "start",
    "finish",
    "wrap",
    "sync_buffers",
    "all_sum",
    "from_main",
    "barrier",
    "launch",
]


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0 alone writes the run folder and prints progress."""
        return self.rank == 0


def from_environment() -> Ranks:
    """The ranks torchrun set for this process (rank 0 of 1 outside torchrun)."""
    return Ranks(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def start(ranks: Ranks, device: torch.device) -> None:
    """Join torchrun's process group: NCCL when ``device`` is a GPU, gloo on the CPU."""
    if not ranks.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def finish() -> None:
    """Leave the process group (if :func:`start` joined one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (e.g. until rank 0 has prepared the run folder)."""
    if dist.is_initialized():
        dist.barrier()


def wrap(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """The module to train: ``model`` itself in one process, else DDP around it.

    On GPUs BatchNorm becomes SyncBatchNorm (statistics over the whole batch, not one rank's
    share). SyncBatchNorm has no CPU implementation, so gloo runs keep BatchNorm with per-rank
    statistics; :func:`sync_buffers` then gives every rank rank 0's running statistics.
    The conversion replaces modules inside ``model`` but keeps its parameters (the optimiser's)
    and the state_dict keys, so checkpoints saved from ``model`` load into a plain UNeXt.
    """
    if not ranks.distributed:
        return model
    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the top module (a UNeXt, not a norm)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def sync_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics): validate what is saved."""
    if dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """``values`` summed over the ranks (element-wise); unchanged in one process."""
    if not dist.is_initialized():
        return list(values)
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def from_main(value: int, device: torch.device) -> int:
    """Rank 0's ``value`` on every rank (decisions that must agree, e.g. a time-limited epoch count)."""
    if not dist.is_initialized():
        return value
    shared = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(shared, src=0)
    return int(shared.item())


def launch(processes: int, argv: Sequence[str]) -> int:
    """Run ``python -m unext_long <argv>`` in ``processes`` ranks under torchrun; its exit status.

    ``--standalone`` makes torchrun pick a free local port for the ranks to meet on. The ranks see
    ``WORLD_SIZE`` and so train instead of launching again.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return subprocess.run([*command, "-m", "unext_long", *argv], check=False).returncode
