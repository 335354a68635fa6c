#!/usr/bin/env bash
# The GPU check: a machine with a GPU runs it in under 10 minutes and prints one table.
#
#   bash benchmarks/bench_gpu.sh [WORK]          # default WORK: benchmarks/output/gpu
#
# Steps (each a plain mslong or ultralytics command, timed): an 8-case 1.5 mm phantom and its
# export; UNeXt trained 5 epochs on cuda; YOLOv9t-seg-long trained 5 epochs on GPU 0; both
# predict the validation slices (slices per second); peak GPU memory of each training from
# nvidia-smi sampled every second. The README's GPU figures come from this script.
set -euo pipefail

WORK=${1:-benchmarks/output/gpu}
BIN=$(dirname "$(command -v python)")
if [ -x .venv/bin/python ]; then BIN=.venv/bin; fi
command -v nvidia-smi > /dev/null || { echo "bench_gpu.sh: no nvidia-smi, no GPU to check" >&2; exit 2; }
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

seconds() { # seconds() NAME COMMAND...: run, time, and record the GPU's peak memory while it runs
    local name=$1; shift
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 1000 > "$WORK/$name.mem" &
    local sampler=$! start=$SECONDS
    "$@" > "$WORK/$name.log" 2>&1
    kill "$sampler"
    echo "$name $((SECONDS - start)) $(sort -n "$WORK/$name.mem" | tail -1)" >> "$WORK/times.txt"
}

rm -f "$WORK/times.txt"
seconds phantom "$BIN/slicer" phantom "$WORK/phantom" --cases 8 --voxel 1.5
seconds export "$BIN/slicer" export --dataset phantom --root "$WORK/phantom" --out "$WORK/export" \
    --spacing 1.5 --drop-empty-fraction 0.8 --overwrite
DATA="$WORK/export/phantom_long.yaml"
seconds unext_train "$BIN/unext-long" train --data "$DATA" --epochs 5 --stem siamese --device cuda \
    --batch 32 --project "$WORK/runs" --name unext --overwrite
seconds yolo_init "$BIN/yolo-long" init --data "$DATA" --out "$WORK/yolo.pt" --overwrite
seconds yolo_train "$BIN/yolo" segment train "data=$DATA" "model=$WORK/yolo.pt" epochs=5 device=0 \
    "project=$WORK/runs" name=yolo exist_ok=True
seconds unext_predict "$BIN/unext-long" predict --weights "$WORK/runs/unext/weights/best.pt" \
    --source "$WORK/export/images/val" --out "$WORK/preds/unext" --device cuda --batch 64 --overwrite
seconds yolo_predict "$BIN/yolo-long" predict --weights "$WORK/runs/yolo/weights/best.pt" \
    --source "$WORK/export/images/val" --out "$WORK/preds/yolo" --device 0 --batch 64 --overwrite

SLICES=$(find "$WORK/export/images/val" -name '*.tif' | wc -l)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "| step | seconds | peak GPU memory (MiB) | slices/s |"
echo "| --- | --- | --- | --- |"
while read -r name took peak; do
    rate=""
    case $name in *_predict) rate=$(python3 -c "print(f'{$SLICES / max($took, 1):.0f}')") ;; esac
    echo "| $name | $took | $peak | $rate |"
done < "$WORK/times.txt"
