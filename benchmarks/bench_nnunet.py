"""nnU-Net v2 beside UNeXt + YOLO, on the demo's phantom and validation cases: one table.

Runs nnU-Net's own commands on the cases of a finished ``mslong demo`` (its phantom, its
export, its UNeXt and YOLO prediction folders), with nnU-Net's three folders under ``--work``:

    slicer export-nnunet --dataset phantom --root DEMO/phantom --out WORK/nnUNet_raw --id 501
    nnUNetv2_plan_and_preprocess -d 501 --verify_dataset_integrity -c CONFIGURATION [-gpu_memory_target GB -overwrite_plans_name PLANS]
    nnUNetv2_train 501 CONFIGURATION 0 -tr TRAINER -p PLANS -device DEVICE
    nnUNetv2_predict -i <validation inputs> -o WORK/preds -d 501 -c CONFIGURATION -f 0 -tr TRAINER -p PLANS --save_probabilities

then scores, by the MSSEG-2 rules against the consensus of the demo's validation patients
(nnU-Net's fold 0 validates on exactly those, from ``splits_final.json``): nnU-Net alone, UNeXt
+ YOLO triplanar, and all three in one lesion-wise vote (nnU-Net as one more voter), with the
seconds per case of nnU-Net's prediction.

    python benchmarks/bench_nnunet.py --demo demo_output                                  # CPU, 1 epoch
    python benchmarks/bench_nnunet.py --demo demo_output --device cuda --trainer nnUNetTrainer_100epochs

The CPU default is nnU-Net's shortest schedule (``nnUNetTrainer_1epoch``: 250 iterations) on a
plan made for a 1 GB memory target (nnU-Net's own ``-gpu_memory_target``: smaller patches, the
same network family and preprocessing), because the default plan's whole-head patches make
one epoch take hours on a laptop's cores. On a GPU the default is nnU-Net's own plan; give a
longer trainer.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from fusion.reassemble import ReassembleOptions, reassemble
from mslong.demo import score_folder
from slicer.datasets import load_dataset

BIN = Path(sys.executable).parent
DATASET_ID = 501
CPU_MEMORY_TARGET_GB = 1.0  # patches of 64³ at 1.5 mm: one nnU-Net epoch fits a CPU session


def _nnunet_env(work: Path, device: str) -> dict[str, str]:
    folders = {name: work / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **{name: str(path) for name, path in folders.items()}}
    if device == "cpu":  # nnU-Net's 12 augmentation workers (sized for a GPU node) would starve the training
        env.setdefault("nnUNet_n_proc_DA", str(max(1, (os.cpu_count() or 2) // 2)))
    return env


def _plans_name(memory_target: float | None) -> str:
    return "nnUNetPlans" if memory_target is None else f"nnUNetPlans_{memory_target:g}GB"


def _planning_flags(memory_target: float | None) -> list[str]:
    if memory_target is None:
        return []
    return ["-gpu_memory_target", f"{memory_target:g}", "-overwrite_plans_name", _plans_name(memory_target)]


def _run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True)
    return time.perf_counter() - start


def _validation_inputs(raw: Path, cases: list[str], out: Path) -> Path:
    """A folder of links to the validation cases' input channels (they sit in imagesTr)."""
    out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        for channel in sorted(raw.glob(f"imagesTr/{case}_*.nii.gz")):
            link = out / channel.name
            if not link.exists():
                link.symlink_to(channel.resolve())
    return out


def _train_and_predict(
    demo: Path, work: Path, args: argparse.Namespace, val: list[str]
) -> tuple[Path, float]:
    env = _nnunet_env(work, args.device)
    raw = work / "nnUNet_raw"
    dataset = next(raw.glob(f"Dataset{DATASET_ID}_*"), None)
    if dataset is None:
        _run([str(BIN / "slicer"), "export-nnunet", "--dataset", "phantom", "--root", str(demo / "phantom"),
              "--out", str(raw), "--id", str(DATASET_ID), "--spacing", str(args.spacing)], env)  # fmt: skip
        dataset = next(raw.glob(f"Dataset{DATASET_ID}_*"))
    config, trainer, plans = args.configuration, args.trainer, _plans_name(args.memory_target)
    _run([str(BIN / "nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "--verify_dataset_integrity",
          "-c", config, "-np", "2", *_planning_flags(args.memory_target)], env)  # fmt: skip
    _run([str(BIN / "nnUNetv2_train"), str(DATASET_ID), config, "0", "-tr", trainer, "-p", plans,
          "-device", args.device], env)  # fmt: skip
    preds = work / "preds"
    inputs = _validation_inputs(dataset, val, work / "val_inputs")
    seconds = _run([str(BIN / "nnUNetv2_predict"), "-i", str(inputs), "-o", str(preds), "-d", str(DATASET_ID),
                    "-c", config, "-f", "0", "-tr", trainer, "-p", plans, "--save_probabilities",
                    "-device", args.device], env)  # fmt: skip
    return preds, seconds / len(val)


def _fused(demo: Path, preds: list[Path], out: Path) -> Path:
    reassemble(
        ReassembleOptions(
            slices=demo / "export", preds=preds, out=out, split="val", vote="triplanar", overwrite=True
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--demo", type=Path, default=Path("demo_output"), help="a finished mslong demo folder"
    )
    parser.add_argument("--work", type=Path, default=Path("benchmarks/output/nnunet"))
    parser.add_argument(
        "--configuration", default="3d_fullres", help="nnU-Net configuration (3d_fullres, 2d)"
    )
    parser.add_argument("--trainer", default="nnUNetTrainer_1epoch", help="nnU-Net trainer class")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--memory-target",
        type=float,
        help="GB for nnU-Net's planner (-gpu_memory_target); default 1 on the CPU, nnU-Net's own plan on a GPU",
    )
    parser.add_argument("--spacing", type=float, default=1.5, help="the demo's export spacing (mm)")
    args = parser.parse_args()
    if args.memory_target is None and args.device == "cpu":
        args.memory_target = CPU_MEMORY_TARGET_GB
    demo, work = args.demo.resolve(), args.work.resolve()
    val = sorted(case.id for case in load_dataset("phantom", root=demo / "phantom") if case.split == "val")
    nnunet, seconds = _train_and_predict(demo, work, args, val)
    two_d = [demo / "preds" / "unext", demo / "preds" / "yolo"]
    folders = {
        "nnU-Net alone": nnunet,
        "UNeXt + YOLO triplanar": _fused(demo, two_d, work / "seg_2d"),
        "UNeXt + YOLO + nnU-Net, one vote": _fused(demo, [*two_d, nnunet], work / "seg_all"),
    }
    rows = {
        name: score_folder(folder, demo / "phantom", work / "eval" / folder.name)
        for name, folder in folders.items()
    }
    table = pd.DataFrame(rows).T.rename_axis("method")
    plans = _plans_name(args.memory_target)
    print(
        f"\nnnU-Net {args.configuration}, {args.trainer}, {plans}, {args.device}; {len(val)} validation patients"
    )
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"nnU-Net prediction: {seconds:.1f} s per case (nnUNetv2_predict, {args.device})")


if __name__ == "__main__":
    main()
