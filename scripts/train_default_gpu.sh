#!/usr/bin/env bash
# Train stage 1 of the bundled default model (esc50-minilm) on a GPU machine, within a fixed
# time budget; stage 2 is configs/default-esc50-finetune.yaml on its output.
#
# The data travels compactly: .device-data/esc50/ holds ESC-50 folds 1-3 as Ogg/Opus
# (scripts/pack_opus.py) with a manifest carrying the label + built-in captions, and
# .device-data/minilm-esc50.safetensors the MiniLM embeddings of those captions
# (querysep.models.text.save_embedding_table), so the machine needs neither ../shared nor
# the MiniLM weights. The network, loss and schedule are those of configs/default-esc50.yaml;
# only the device, batch, segment length and step count differ. The step count is chosen from
# a measured speed so that training ends within BUDGET_SECONDS (cosine schedule completes).
#
#   BUDGET_SECONDS=400 OUT=out bash scripts/train_default_gpu.sh [key=value ...]
#
# Arguments are further config overrides (a lever of issue #17, for example
# 'data.speed_range=[0.9,1.1]'), applied to the probe and to the run alike. Environment:
# BATCH (64), WORKERS (8), PRECISION (bf16-mixed), MAX_TIME (a tenth above the budget),
# CUDNN_BENCHMARK and CHANNELS_LAST (true/false). Where neither is set, a second probe tries
# both on, and the run uses them if they are at least 5 % faster (one more 60-step probe
# with its start-up; the budget counts training only: on 2026-12-04 everything besides
# training, one probe included, took 69 s of the script's 522 s on the H200). scripts/gpu_speed_probes.sh measures each on its own.
# On an H200 batch 128 fed no more examples per second than batch 64 (the step is
# compute-bound; model card, "GPU run of 2026-12-04"), so the batch stays at 64.
# A run that stops early (the divergence guard of querysep.training.module) still exports
# its last checkpoint (saved at the stop step; skipped steps leave weights finite), and the
# script then exits with the training's status.
set -euo pipefail
START=$(date +%s)
cd "$(dirname "$0")/.."
source scripts/gpu_env.sh
BUDGET=${BUDGET_SECONDS:-400}
CAP=$(( BUDGET * 11 / 10 ))  # the time limit's stop, should training run slower than probed
printf -v CAP_TEXT '%02d:%02d:%02d' $(( CAP / 3600 )) $(( CAP % 3600 / 60 )) $(( CAP % 60 ))
OUT=${OUT:-runs/gpu-default-out}
RUN=runs/gpu-default
ARGS=(
  "${RECIPE[@]}" "data.batch_size=${BATCH:-64}" "trainer.output_dir=$RUN" "trainer.checkpoint_every_n_steps=250"
  "trainer.max_time=${MAX_TIME:-$CAP_TEXT}"
)
LAYOUT=("trainer.cudnn_benchmark=${CUDNN_BENCHMARK:-null}" "trainer.channels_last=${CHANNELS_LAST:-false}")
FAST=("trainer.cudnn_benchmark=true" "trainer.channels_last=true")
mkdir -p "$OUT"
probe() {  # probe OUTFILE OVERRIDES...: prints the run's speed, leaves its steps/s in RATE
  local file=$1
  shift
  python3 benchmarks/train_speed.py "${ARGS[@]}" "$@" --steps "${PROBE_STEPS:-60}" \
    --skip "${PROBE_SKIP:-10}" --json | tee "$file" || return 1
  RATE=$(python3 -c "import json; print(json.loads(open('$file').read().strip().splitlines()[-1])['steps_per_s'])")
}
probe "$OUT/probe.txt" "${LAYOUT[@]}" "$@"
# Unless the layout was chosen (CHANNELS_LAST / CUDNN_BENCHMARK), also probe channels-last
# with cuDNN's algorithm search, and train with it where it is at least 5 % faster.
# (Not with deterministic training, which refuses cuDNN's search; a failed probe is no fault.)
if [[ "$ACCEL" != cpu && -z "${CHANNELS_LAST:-}${CUDNN_BENCHMARK:-}" && "$*" != *deterministic=true* ]]; then
  PLAIN=$RATE
  if probe "$OUT/probe-fast.txt" "${FAST[@]}" "$@" \
    && python3 -c "import sys; sys.exit(0 if $RATE >= 1.05 * $PLAIN else 1)"; then
    LAYOUT=("${FAST[@]}")
    echo "channels-last with cuDNN search: $RATE steps/s against $PLAIN: using it"
  else
    echo "channels-last with cuDNN search: ${RATE} steps/s against $PLAIN (or failed): not used"
    RATE=$PLAIN
  fi
fi
ARGS+=("${LAYOUT[@]}" "$@")
STEPS=$(python3 -c "print(max(20, int($RATE * $BUDGET)))")
echo "measured $RATE steps/s -> training $STEPS steps"
STATUS=0
python3 -m querysep train "${ARGS[@]}" "trainer.max_steps=$STEPS" \
  "optim.warmup_steps=$((STEPS / 20))" --restart 2>&1 | tee "$OUT/train.log" || STATUS=$?
cp "$RUN"/logs/csv/metrics.csv "$OUT"/ 2>/dev/null || true
if [[ $STATUS -ne 0 ]]; then
  if [[ ! -f "$RUN/checkpoints/last.ckpt" ]]; then
    echo "training failed (exit $STATUS) before its first checkpoint: nothing to export"
    exit "$STATUS"
  fi
  echo "training stopped early (exit $STATUS): exporting its last checkpoint"
  python3 -m querysep train export "$RUN/checkpoints/last.ckpt" -o "$RUN/model"
fi
cp "$RUN"/model/config.json "$RUN"/model/model.safetensors "$OUT"/
echo "wall time $(( $(date +%s) - START )) s"
exit "$STATUS"  # an early stop still fails the script, with its export in $OUT
