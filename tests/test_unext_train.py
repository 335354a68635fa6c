"""UNeXt on the phantom export: data reading, a tiny CPU training with resume, checkpoints, prediction."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from runtime.errors import InputError
from runtime.predictions import encode_probability
from runtime.provenance import file_sha256
from slicer.dataset_yaml import list_images, read_export_yaml
from slicer.writer import read_slice_image
from unext_long.cli import main
from unext_long.data import SliceDataset, mask_path, pad_collate
from unext_long.predict import load_model, predict_folder, predict_images
from unext_long.train import TrainOptions, train

# A handful of slices, small crops and the small model: seconds on two cores.
TINY = {"epochs": 2, "imgsz": 64, "batch": 4, "size": "unext-s", "max_slices": 12, "workers": 0}


@pytest.fixture(scope="module")
def trained_run(phantom_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch siamese-stem run, trained as 1 epoch then resumed for the second."""
    project = tmp_path_factory.mktemp("unext_runs")
    data = phantom_export / "phantom_long.yaml"
    train(TrainOptions(data, stem="siamese", project=project, **{**TINY, "epochs": 1}))
    result = train(TrainOptions(data, stem="siamese", project=project, resume=True, **TINY))
    assert result.epochs == 2
    return result.run_dir


def test_export_yaml_and_slices_are_read_per_the_contract(phantom_export: Path) -> None:
    info = read_export_yaml(phantom_export / "phantom_long.yaml")
    assert info.channels == 9 and info.channel_groups["t0"] == [3, 4, 5]
    images = list_images(info.splits["val"])
    assert all(mask_path(p).is_file() for p in images)
    image, mask = SliceDataset(images[:2], info.channels)[0]
    assert image.shape[0] == 9 and mask.shape == (1, *image.shape[1:])
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    axial = next(p for p in images if "_axial_" in p.name)
    sagittal = next(p for p in images if "_sagittal_" in p.name)
    pair = SliceDataset([axial, sagittal], info.channels)
    (a, _), (b, _) = pair[0], pair[1]
    stacked, masks, valid = pad_collate([pair[0], pair[1]])
    assert stacked.shape[2:] == (max(a.shape[1], b.shape[1]), max(a.shape[2], b.shape[2]))
    assert float(valid.sum()) == a.shape[1] * a.shape[2] + b.shape[1] * b.shape[2]


def test_training_writes_results_and_weights_only_checkpoints(trained_run: Path) -> None:
    with (trained_run / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds"}
    assert all(np.isfinite(float(r["train_loss"])) and 0 <= float(r["val_dice"]) <= 1 for r in rows)
    last = torch.load(trained_run / "weights" / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and last["optimizer"]["state"]  # the optimiser was restored and stepped
    best = torch.load(trained_run / "weights" / "best.pt", weights_only=True)
    config = json.loads(best["config"])
    assert config["model"] == "unext-s" and config["stem"] == "siamese" and config["in_channels"] == 9
    assert config["channel_groups"] == {"t1": [0, 1, 2], "t0": [3, 4, 5], "diff": [6, 7, 8]}
    assert config["recipe"] == ["t1", "t0", "diff"]


def test_checkpoint_round_trip_gives_the_same_model(trained_run: Path, phantom_export: Path) -> None:
    model, config = load_model(trained_run / "weights" / "best.pt", "cpu")
    state = torch.load(trained_run / "weights" / "best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    image = np.random.default_rng(0).integers(0, 255, (9, 45, 37), dtype=np.uint8)
    prob = next(predict_images(model, [image]))
    assert prob.shape == (45, 37) and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1


def test_predict_writes_one_png_per_slice_of_the_same_size(trained_run: Path, phantom_export: Path) -> None:
    source = phantom_export / "images" / "val"
    images = list_images(source)[::25]  # a few slices of every orientation
    folder = source.parent.parent / "few"
    folder.mkdir(exist_ok=True)
    for path in images:
        (folder / path.name).write_bytes(path.read_bytes())
    out = folder.parent / "preds"
    weights = trained_run / "weights" / "best.pt"
    result = predict_folder(weights, folder, out, batch=3, device="cpu")
    assert result.written == len(images) and sorted(p.stem for p in out.glob("*.png")) == [
        p.stem for p in images
    ]
    assert json.loads((out / "provenance.json").read_text())["weights_sha256"] == file_sha256(weights)
    model, _ = load_model(weights, "cpu")
    for path in images:
        png = cv2.imread(str(out / f"{path.stem}.png"), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(mask_path(path)), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint8 and png.shape == mask.shape
    # The in-memory API gives exactly what the files hold.
    probs = predict_images(model, [read_slice_image(p) for p in images], batch=3)
    for path, prob in zip(images, probs, strict=True):
        assert np.array_equal(
            encode_probability(prob), cv2.imread(str(out / f"{path.stem}.png"), cv2.IMREAD_UNCHANGED)
        )
    assert predict_folder(weights, folder, out, device="cpu").skipped == len(images)
    assert predict_folder(weights, folder, out, device="cpu", overwrite=True).written == len(images)


def test_predict_refuses_a_folder_made_by_other_weights(trained_run: Path, phantom_export: Path) -> None:
    source = phantom_export / "images" / "val"
    folder = source.parent.parent / "one"
    folder.mkdir(exist_ok=True)
    image = list_images(source)[0]
    (folder / image.name).write_bytes(image.read_bytes())
    out = folder.parent / "preds_one"
    best, other = trained_run / "weights" / "best.pt", folder.parent / "other.pt"
    checkpoint = torch.load(best, weights_only=True)
    first = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][first] = checkpoint["state_dict"][first] + 1e-3
    torch.save(checkpoint, other)
    predict_folder(best, folder, out, device="cpu")
    assert predict_folder(best, folder, out, device="cpu").skipped == 1
    command = [
        "predict",
        "--weights",
        str(other),
        "--source",
        str(folder),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    process = subprocess.run(
        [sys.executable, "-m", "unext_long.cli", *command], capture_output=True, text=True
    )
    assert process.returncode == 2 and process.stderr.strip().splitlines() == [
        f"error: {out / 'provenance.json'}: was made with other weights_sha256; use --overwrite or another output folder"
    ]


def test_cli_reports_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tmp_path / "missing.yaml"), "--project", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.yaml'}: dataset YAML not found"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "predict",
                "--weights",
                str(tmp_path / "w.pt"),
                "--source",
                str(tmp_path),
                "--out",
                str(tmp_path),
            ]
        )
    assert exit_info.value.code == 2


def test_an_existing_run_is_not_overwritten_silently(trained_run: Path, phantom_export: Path) -> None:
    options = TrainOptions(
        phantom_export / "phantom_long.yaml", project=trained_run.parent, name=trained_run.name
    )
    with pytest.raises(Exception, match="--resume"):
        train(options)


def test_list_images_reads_a_txt_listing(phantom_export: Path, tmp_path: Path) -> None:
    chosen = list_images(phantom_export / "images" / "val")[:3]
    (tmp_path / "images").symlink_to(phantom_export / "images")
    listing = tmp_path / "sample.txt"
    listing.write_text(f"{chosen[2]}\n" + "".join(f"./images/val/{p.name}\n" for p in chosen[:2]))
    assert [p.name for p in list_images(listing)] == [p.name for p in chosen]
    listing.write_text("./images/val/nowhere.tif\n")
    with pytest.raises(InputError, match="missing slice"):
        list_images(listing)
