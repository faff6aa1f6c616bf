#!/usr/bin/env bash
# Issue 8's end-to-end check: the shipped recipe's GAN stages (scripts/train_default.sh: 6,000
# steps, the 1,000-step tail, the VAE warm-up and stage under the decaying rate) on the GPU from
# the shipped encoder (session 19's, what the recipe's encoder stage makes), then what a CPU
# session needs to evaluate it against the CPU-trained model under $OUT (the run tool brings back
# at most 8 files of 16 MiB): the final model and its style encoder, the exports at 7,000, 7,500
# and 8,000 (model-007000.safetensors …), and train-logs.tar.gz (the script's log, log.jsonl,
# the last sample grid).
#
#   OUT=$OUT bash scripts/gpu-train-default.sh [SECONDS]     # in a `run` with carry [".gpu"]
#
# SECONDS (default 330) caps the training; what was exported by then still comes back. GAN_SEED
# and NEW_RUN_FLAGS pass through to train_default.sh (a replicate, or a variant of the recipe).
# GPU_TRAIN_DEVICE=cpu T2I_STEPS=20 TAIL_STEPS=10 DECAY_STEPS=20 VAE_WARM=10 dry-runs it on a
# machine without a GPU (T2I_STEPS: the first GAN stage's steps).
set -u
out=${OUT:-/tmp/out}
mkdir -p "$out"
seconds=${1:-330}
. scripts/gpu-unpack.sh
[ -n "$cli" ] || { echo "gpu-train-default: no .gpu/bin/bin-text2img: run scripts/gpu-bundle.sh and carry .gpu" >&2; exit 2; }
run=/tmp/gpu-train-default
rm -rf "$run"
start=$SECONDS
# shellcheck disable=SC2086
T2I_BIN=$cli DEVICE=${GPU_TRAIN_DEVICE:-cuda} ENCODER=weights/default.safetensors GAN_ONLY=1 \
  timeout "$seconds" bash scripts/train_default.sh "$run" 0 ${T2I_STEPS:-} > "$run.log" 2>&1
rc=$?
echo "gpu-train-default: train_default.sh exited with $rc after $((SECONDS - start)) s" | tee -a "$run.log"
tail -3 "$run/gan/log.jsonl" 2>/dev/null | tee -a "$run.log"
for f in model.safetensors model-style.safetensors model-007000.safetensors model-007500.safetensors \
  model-008000.safetensors; do
  [ -f "$run/gan/$f" ] && cp "$run/gan/$f" "$out/"
done
grid=$(ls "$run"/gan/samples_*.png 2>/dev/null | sort -V | tail -1)
(cd /tmp && tar czf "$out/train-logs.tar.gz" "$(basename "$run").log" \
  "$(basename "$run")/gan/log.jsonl" ${grid:+"${grid#/tmp/}"} 2>/dev/null)
ls -la "$out"
exit $rc
