"""Options of ``mslong demo``, kept apart from the pipeline so that ``mslong --help`` stays instant."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoOptions"]


@dataclass(frozen=True)
class DemoOptions:
    out: Path = Path("demo_output")
    # Six patients train and six are scored: fewer validation patients make lesion F1 a coin toss.
    cases: int = 12
    voxel: float = 1.5
    seed: int = 0
    val_cases: int = 6
    unext_epochs: int = 12
    # Share of lesion slices in UNeXt's epochs (the trainer's default is 0.5): a run of a few
    # epochs sees each lesion slice more often (docs/results.md compares both over training seeds).
    unext_lesion_fraction: float = 0.7
    yolo_epochs: int = 10
    # 1.5 mm slices are ~110x130 px and lesions a few pixels: YOLO sees them upsampled.
    yolo_imgsz: int = 224
    # Slices each trainer validates on while training (a sample of the validation split):
    # validating on all ~2000 every epoch would cost as much as the training itself.
    val_slices: int = 400
    device: str | None = None
    overwrite: bool = False
