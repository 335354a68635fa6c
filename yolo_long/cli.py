"""``yolo-long``: build an untrained two-timepoint YOLOv9-seg checkpoint, predict probability PNGs.

Training itself is the plain ultralytics command line::

    yolo-long init --model yolov9t-seg-long --stem siamese --data DATA.yaml --out model.pt
    yolo segment train cfg=model.train.yaml epochs=100
    yolo-long predict --weights runs/segment/train/weights/best.pt --source OUT/images/val --out preds/yolo
"""

from __future__ import annotations

import argparse

from runtime.arguments import defaults_from, given_arguments
from runtime.cluster import add_cluster_arguments, cluster_options
from runtime.errors import cli_entry
from yolo_long.build import MODELS, STEMS  # light: torch and ultralytics load inside the commands


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolo-long",
        description="Two-timepoint YOLOv9-seg for new MS lesions: init a checkpoint, predict probability PNGs.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser(
        "init", help="write an untrained checkpoint for a dataset's channels, and its training cfg= file"
    )
    init.add_argument("--model", choices=MODELS, default="yolov9t-seg-long")
    init.add_argument(
        "--stem", choices=STEMS, default="siamese", help="two-timepoint stem (default: siamese)"
    )
    init.add_argument("--data", required=True, help="dataset YAML written by the slicer export")
    init.add_argument("--out", required=True, help="checkpoint to write (.pt); OUT.train.yaml goes beside it")
    init.add_argument(
        "--imgsz",
        type=int,
        default=None,
        help="image size stored in it (default: the export's largest slice)",
    )
    init.add_argument("--seed", type=int, default=0)
    init.add_argument("--overwrite", action="store_true")

    predict = commands.add_parser(
        "predict",
        help="one probability PNG per slice of a folder",
        **defaults_from("yolo_long.predict:predict_folder"),
    )
    predict.add_argument("--weights", required=True, help="trained checkpoint (best.pt)")
    predict.add_argument(
        "--source", required=True, help="folder of exported .tif slices, or a .txt listing of them"
    )
    predict.add_argument("--out", required=True, help="folder for <stem>.png")
    predict.add_argument("--imgsz", type=int, help="inference size (default: the checkpoint's training size)")
    predict.add_argument("--conf", type=float, help="instance confidence threshold")
    predict.add_argument("--device", help="e.g. cpu, 0 (default: ultralytics' choice)")
    predict.add_argument("--batch", type=int, help="slices per forward pass")
    predict.add_argument("--overwrite", action="store_true", help="redo slices that already have a PNG")
    predict.add_argument("--cases", nargs="+", help="only the slices of these case ids")
    add_cluster_arguments(predict)
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "init":
        from yolo_long.build import init_checkpoint

        init_checkpoint(args.model, args.stem, args.data, args.out, args.imgsz, args.seed, args.overwrite)
    else:
        from yolo_long.predict import predict_folder

        cluster = cluster_options(args, args.out, "yolo-long-predict")
        predict_folder(**given_arguments(args, "command"), shard=cluster.shard, cluster=cluster)


if __name__ == "__main__":
    main()
