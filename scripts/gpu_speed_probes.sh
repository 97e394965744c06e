#!/usr/bin/env bash
# Training-speed probes of the default model's GPU recipe (scripts/train_default_gpu.sh):
# cuDNN's algorithm search, channels-last layout and batch size, each measured with
# benchmarks/train_speed.py (40 steps after 10 warm-up steps) on the same data, so that a
# GPU session can pick the fastest settings before it trains.
#
#   OUT=out bash scripts/gpu_speed_probes.sh        # prints each probe, appends to $OUT/probes.txt
#
# Needs .device-data/ (see the model card of esc50-minilm) and, where the image lacks them,
# the wheels in .whl/.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_env.sh
OUT=${OUT:-runs/gpu-probes}
mkdir -p "$OUT"
START=$(date +%s)
probe() {
  echo "== $*" | tee -a "$OUT/probes.txt"
  timeout "${PROBE_TIMEOUT:-90}" python3 benchmarks/train_speed.py "${RECIPE[@]}" "$@" \
    --steps "${PROBE_STEPS:-40}" --skip "${PROBE_SKIP:-10}" --json 2>&1 \
    | grep -E "^(speed|compute|data wait|peak GPU) |^\{|Error" | tee -a "$OUT/probes.txt"
  echo "   (at $(( $(date +%s) - START )) s)"
}
B=${BATCH:-64}
probe "data.batch_size=$B"
probe "data.batch_size=$B" trainer.cudnn_benchmark=true
probe "data.batch_size=$B" trainer.channels_last=true
probe "data.batch_size=$B" trainer.cudnn_benchmark=true trainer.channels_last=true
echo "total $(( $(date +%s) - START )) s"
