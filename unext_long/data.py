"""The slicer's 2D export as a PyTorch dataset: TIFF slices, mask PNGs, MRI-friendly augmentation.

The export contract (see the design notes): ``images/<split>/<stem>.tif`` is a uint8 ``(C, H, W)``
multi-page TIFF, ``masks/<split>/<stem>.png`` a uint8 ``(H, W)`` mask (0/255, or soft 0..255 for the
mean of several raters, used as ``mask / 255``), and the dataset YAML names the folders relative to
``path`` and carries the ``mslong`` block with the channel groups.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from runtime.errors import InputError
from slicer.writer import read_slice_image

__all__ = [
    "mask_path",
    "read_mask",
    "image_to_tensor",
    "lesion_flags",
    "IntensityJitter",
    "Augment",
    "SliceDataset",
    "pad_stack",
    "pad_collate",
    "epoch_seed",
    "LesionSampler",
]

# Groups that are not a scan: a signed difference keeps its zero at 128, so it is not jittered.
UNJITTERED_GROUPS = ("diff",)


def mask_path(image: str | Path) -> Path:
    """``.../images/<split>/<stem>.tif`` -> ``.../masks/<split>/<stem>.png``.

    >>> mask_path("/data/export/images/train/c1_axial_010.tif").as_posix()
    '/data/export/masks/train/c1_axial_010.png'
    """
    parts = list(Path(image).with_suffix(".png").parts)
    if "images" not in parts:
        raise InputError(image, "is not inside an images/ folder, so its mask cannot be found")
    parts[len(parts) - 1 - parts[::-1].index("images")] = "masks"
    return Path(*parts)


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a mask PNG as float32 ``(H, W)`` in [0, 1] (soft multi-rater masks stay soft)."""
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise InputError(path, "mask PNG missing or unreadable")
    if mask.shape != tuple(shape) or mask.dtype != np.uint8:
        raise InputError(
            path, f"expected a uint8 mask of shape {tuple(shape)}, got {mask.dtype} {mask.shape}"
        )
    return mask.astype(np.float32) / 255.0


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``(C, H, W)`` -> float32 tensor in [0, 1] (the network's input scale)."""
    return torch.from_numpy(image.astype(np.float32) / 255.0)


def lesion_flags(images: Sequence[Path]) -> np.ndarray:
    """Which slices hold lesion pixels: from the export's ``manifest.csv`` when it lists them all,
    otherwise from the masks themselves."""
    if not images:
        return np.zeros(0, dtype=bool)
    manifest = mask_path(images[0]).parents[2] / "manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="") as handle:
            pixels = {row["stem"]: row.get("lesion_pixels") for row in csv.DictReader(handle)}
        if all(pixels.get(p.stem) not in (None, "") for p in images):
            return np.array([float(pixels[p.stem]) > 0 for p in images])
    return np.array([bool(cv2.imread(str(mask_path(p)), cv2.IMREAD_UNCHANGED).any()) for p in images])


class IntensityJitter:
    """Brightness, contrast and gamma drawn separately for each channel group (each time point).

    Scans of two visits differ in contrast; jittering them independently teaches the network to
    look past that. Groups named in ``UNJITTERED_GROUPS`` (the signed difference) are left alone.

    Args:
        channel_groups: ``{group: [channel indices]}``; the whole image is one group when empty.
        brightness: maximum additive shift (image scale [0, 1]).
        contrast: maximum relative change of contrast.
        gamma: maximum relative change of gamma.
        p: probability of jittering each group.

    >>> jitter = IntensityJitter({"t1": [0], "t0": [1]}, p=1.0)
    >>> params = jitter.draw(np.random.default_rng(0))
    >>> jitter.apply(np.full((4, 4, 2), 0.5, np.float32), params).shape
    (4, 4, 2)
    """

    def __init__(
        self,
        channel_groups: Mapping[str, Sequence[int]],
        brightness: float = 0.1,
        contrast: float = 0.2,
        gamma: float = 0.2,
        p: float = 0.8,
    ) -> None:
        self.groups = {k: list(v) for k, v in channel_groups.items() if k not in UNJITTERED_GROUPS}
        self.brightness, self.contrast, self.gamma, self.p = brightness, contrast, gamma, p

    def draw(self, rng: np.random.Generator) -> dict[str, tuple[float, float, float]]:
        """Random ``(shift, contrast factor, gamma)`` per group that will be jittered."""
        return {
            name: (
                rng.uniform(-self.brightness, self.brightness),
                rng.uniform(1 - self.contrast, 1 + self.contrast),
                rng.uniform(1 - self.gamma, 1 + self.gamma),
            )
            for name in self.groups
            if rng.random() < self.p
        }

    def apply(self, image: np.ndarray, params: Mapping[str, tuple[float, float, float]]) -> np.ndarray:
        """Apply drawn parameters to a float ``(H, W, C)`` image in [0, 1] (returns a new array)."""
        out = image.copy()
        all_channels = list(range(image.shape[-1]))
        for name, (shift, factor, gamma) in params.items():
            channels = self.groups.get(name) or all_channels
            group = out[..., channels]
            group = (group - group.mean()) * factor + group.mean() + shift
            out[..., channels] = np.clip(group, 0.0, 1.0) ** gamma
        return out


class Augment:
    """Training augmentation: crop to ``imgsz``, flips, small affine, elastic, per-group intensity,
    blur and noise. Geometric transforms move every channel and the mask together.

    Args:
        imgsz: side of the square training crop (slices are reflect-padded when smaller; the crop
            holds lesion pixels whenever the slice has some).
        channel_groups: ``{group: [channel indices]}`` for :class:`IntensityJitter`.
        seed: seed of the random draws (reseed each worker with :meth:`reseed`).
    """

    def __init__(self, imgsz: int, channel_groups: Mapping[str, Sequence[int]], seed: int = 0) -> None:
        import albumentations as A  # training only: its import would slow every prediction's start-up

        self.spatial = A.Compose(
            [
                A.PadIfNeeded(imgsz, imgsz, border_mode=cv2.BORDER_REFLECT_101),
                A.CropNonEmptyMaskIfExists(imgsz, imgsz),
                A.HorizontalFlip(p=0.5),
                A.VerticalFlip(p=0.5),
                A.Affine(scale=(0.9, 1.1), rotate=(-15, 15), translate_percent=(-0.05, 0.05), p=0.5),
                A.ElasticTransform(alpha=20, sigma=5, p=0.2),
            ]
        )
        self.pixel = A.Compose(
            [
                A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.1, 1.0), p=0.2),
                A.GaussNoise(std_range=(0.01, 0.04), p=0.3),
            ]
        )
        self.jitter = IntensityJitter(channel_groups)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Make the following draws a function of ``seed`` only."""
        self.rng = np.random.default_rng(seed)
        self.spatial.set_random_seed(seed)
        self.pixel.set_random_seed(seed + 1)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Augment a float ``(H, W, C)`` image in [0, 1] and its float ``(H, W)`` mask."""
        out = self.spatial(image=image, mask=mask)
        image = self.jitter.apply(out["image"], self.jitter.draw(self.rng))
        image = np.clip(self.pixel(image=image)["image"], 0.0, 1.0)
        return image.astype(np.float32), out["mask"].astype(np.float32)


class SliceDataset(Dataset):
    """Slices of an export split as ``(image (C, H, W) float32 in [0, 1], mask (1, H, W) float32)``.

    Args:
        images: the slice TIFFs (see :func:`slicer.dataset_yaml.list_images`).
        channels: expected channel count.
        augment: training augmentation, or ``None`` (validation: full slices, unchanged).
    """

    def __init__(self, images: Sequence[Path], channels: int, augment: Augment | None = None) -> None:
        self.images, self.channels, self.augment = list(images), channels, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.images[index]
        image = read_slice_image(path, self.channels)
        mask = read_mask(mask_path(path), image.shape[1:])
        if self.augment is None:
            return image_to_tensor(image), torch.from_numpy(mask)[None]
        hwc, mask = self.augment(image.transpose(1, 2, 0).astype(np.float32) / 255.0, mask)
        return torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1))), torch.from_numpy(mask)[None]


def pad_stack(tensors: Sequence[torch.Tensor], mode: str = "constant") -> torch.Tensor:
    """Stack ``(C, H, W)`` tensors of different sizes, padded at the bottom and right to the largest.

    Args:
        tensors: the tensors (same C).
        mode: ``"constant"`` (zeros) or ``"replicate"`` (repeat the edge: images, so that the
            difference channel keeps its neutral value).
    """
    height = max(t.shape[1] for t in tensors)
    width = max(t.shape[2] for t in tensors)
    return torch.stack(
        [F.pad(t, (0, width - t.shape[2], 0, height - t.shape[1]), mode=mode) for t in tensors]
    )


def pad_collate(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collate ``(image, mask)`` pairs of different sizes (see :func:`pad_stack`).

    Returns:
        images ``(B, C, H, W)``, masks ``(B, 1, H, W)``, valid ``(B, 1, H, W)`` (1 inside each slice,
        0 on padding, so losses and Dice ignore it).
    """
    images = pad_stack([image for image, _ in batch], mode="replicate")
    masks = pad_stack([mask for _, mask in batch])
    valid = pad_stack([torch.ones_like(mask) for _, mask in batch])
    return images, masks, valid


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's draws (sampling, augmentation), distinct for every run seed and epoch
    below 10 000."""
    return seed * 10_000 + epoch


class LesionSampler(Sampler[int]):
    """Draw ``len(flags)`` slices per epoch with about ``lesion_fraction`` of them holding lesions.

    New lesions are rare (most slices are empty); oversampling the lesion slices keeps every batch
    informative. With no lesion slice (or only lesion slices) sampling is uniform.

    Under DDP every rank makes the same draw (with replacement, seeded by ``seed`` and the epoch set
    with :meth:`set_epoch`), padded to a multiple of ``num_replicas``, and keeps the positions
    ``rank, rank + num_replicas, ...``: disjoint shares of one draw, of equal length (so the ranks
    step together), each an independent weighted sample with the same lesion fraction.

    >>> sampler = LesionSampler(np.array([True, False, False, False, False]), 0.5, num_replicas=2, rank=1)
    >>> sampler.set_epoch(3)
    >>> len(sampler), len(list(sampler))
    (3, 3)
    """

    def __init__(
        self, flags: np.ndarray, lesion_fraction: float, seed: int = 0, num_replicas: int = 1, rank: int = 0
    ) -> None:
        count = int(flags.sum())
        if count in (0, len(flags)):
            weights = np.ones(len(flags))
        else:
            weights = np.where(flags, lesion_fraction / count, (1 - lesion_fraction) / (len(flags) - count))
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.seed, self.num_replicas, self.rank, self.epoch = seed, num_replicas, rank, 0
        self.num_samples = -(-len(flags) // num_replicas)  # ceil: every rank gets as many

    def set_epoch(self, epoch: int) -> None:
        """Make the next draw that of ``epoch`` (a function of ``seed`` and ``epoch`` only)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        total = self.num_samples * self.num_replicas
        draw = torch.multinomial(self.weights, total, replacement=True, generator=generator)
        return iter(draw[self.rank :: self.num_replicas].tolist())
