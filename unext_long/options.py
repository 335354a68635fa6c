"""What ``unext-long train`` can be asked: the options and the names of its choices.

Kept free of torch so that the command line parses (and prints ``--help``) at once; the model,
stem and loss modules key their builders by these names.

>>> TrainOptions(data=Path("export/phantom_long.yaml")).stem
'early'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["TrainOptions", "STEMS", "MODEL_SIZES", "LOSS_NAMES"]

STEMS = ("early", "siamese")
MODEL_SIZES = ("unext", "unext-s")
LOSS_NAMES = ("bce-dice", "focal-tversky")


@dataclass
class TrainOptions:
    """Everything a training run depends on (the flags of ``unext-long train``).

    ``max_slices`` keeps a seeded random subset of each split (quick runs and tests);
    ``batch`` is the total over the DDP ranks (each takes ``batch / world size``), so a run keeps its
    optimisation steps whatever the number of GPUs.
    ``time_limit`` (minutes) shortens the cosine schedule so the run ends within it. ``resume``
    restores weights, optimiser, epoch and best Dice from ``last.pt`` and continues to ``epochs``
    (the cosine schedule is a function of the epoch and ``epochs``, so it resumes exactly).
    """

    data: Path
    epochs: int = 100
    imgsz: int = 256
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    device: str = "auto"
    stem: str = "early"
    size: str = "unext"
    loss: str = "bce-dice"
    lesion_fraction: float = 0.5
    max_slices: int | None = None
    time_limit: float | None = None
    project: Path = Path("runs/unext")
    name: str = "exp"
    resume: bool = False
    overwrite: bool = False
    seed: int = 0
    workers: int = 2
