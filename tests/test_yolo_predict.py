"""yolo_long: probability PNGs per slice, in memory and through `yolo-long predict`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from runtime.errors import InputError
from yolo_long.build import init_checkpoint
from yolo_long.predict import load_model, predict_folder, predict_images


@pytest.fixture(scope="module")
def weights(phantom_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("yolo_predict") / "init.pt"
    return init_checkpoint("yolov9t-seg-long", "grouped", phantom_export / "phantom_long.yaml", out, imgsz=64)


@pytest.fixture(scope="module")
def slices(phantom_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six val slices of all three orientations (their sizes differ)."""
    folder = tmp_path_factory.mktemp("slices")
    for orientation in ("axial", "coronal", "sagittal"):
        for path in sorted((phantom_export / "images" / "val").glob(f"*_{orientation}_*.tif"))[10:12]:
            (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_in_memory_api_returns_one_map_per_image_at_its_size(weights: Path, slices: Path) -> None:
    images = [tifffile.imread(p) for p in sorted(slices.glob("*.tif"))]
    model = load_model(weights, "cpu")
    probs = list(predict_images(model, iter(images), imgsz=64, conf=0.001, batch=4, device="cpu"))
    assert [p.shape for p in probs] == [im.shape[1:] for im in images]
    assert all(p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1 for p in probs)


def test_cli_writes_one_png_per_slice_and_skips_finished(weights: Path, slices: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds"
    command = [sys.executable, "-m", "yolo_long.cli", "predict", "--weights", str(weights)]
    command += ["--source", str(slices), "--out", str(out), "--device", "cpu", "--conf", "0.001"]
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "wrote 6 probability PNGs" in run.stdout
    for path in slices.glob("*.tif"):
        png = cv2.imread(str(out / f"{path.stem}.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint8 and png.shape == tifffile.imread(path).shape[1:]
    assert predict_folder(weights, slices, out, conf=0.001).skipped == 6
    with pytest.raises(InputError, match="other conf"):  # other settings never mix into the folder
        predict_folder(weights, slices, out, conf=0.2)


def test_predicts_the_slices_a_listing_names(weights: Path, slices: Path, tmp_path: Path) -> None:
    chosen = sorted(slices.glob("*.tif"))[:2]
    listing = tmp_path / "two.txt"
    listing.write_text("".join(f"{path}\n" for path in chosen))
    predict_folder(weights, listing, tmp_path / "preds", conf=0.001, device="cpu")
    assert sorted(p.stem for p in (tmp_path / "preds").glob("*.png")) == [p.stem for p in chosen]


def test_bad_slice_is_one_line_error(weights: Path, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    tifffile.imwrite(
        tmp_path / "src" / "x_axial_000.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack"
    )
    command = [sys.executable, "-m", "yolo_long.cli", "predict", "--weights", str(weights)]
    command += ["--source", str(tmp_path / "src"), "--out", str(tmp_path / "out")]
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].endswith("x_axial_000.tif: has 3 channels, expected 9")
    assert not list((tmp_path / "out").glob("*.png"))
