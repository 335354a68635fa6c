"""Which torch device a command runs on: one rule for every trainer, predictor and command.

``auto`` (or None) takes CUDA when there is a GPU, else the CPU; ``cpu``, ``cuda`` and
``cuda:N`` are taken as given, and a CUDA request without a GPU is refused with one line.
Torch is imported when a device is chosen, so that command lines stay light.

>>> str(select_device("cpu"))
'cpu'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["select_device"]


def select_device(spec: str | None = "auto", local_rank: int | None = None) -> torch.device:
    """The device ``spec`` names (``auto``/None: CUDA when available, else the CPU).

    Under torchrun (``local_rank`` given) CUDA means this rank's GPU, ``cuda:<local_rank>``.
    """
    import torch

    spec = spec or "auto"
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if spec == "auto" else spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", f"{spec} requested but CUDA is not available")
    if local_rank is None or device.type != "cuda":
        return device
    if device.index is not None:
        raise InputError("--device", "under torchrun each rank takes its own GPU: pass auto or cuda")
    return torch.device("cuda", local_rank)
