#!/usr/bin/env bash
# Issue 5's length lever on the GPU machine: a `shapes` GAN run for as many steps as SECONDS
# allow (the CPU here gives ~3,000 steps a session; no run of that length has drawn outlines),
# then what a CPU session needs to judge it and to go on from it, under $OUT (the run tool brings
# back at most 8 files of 16 MiB, 64 MiB in all): train.log, log.jsonl.gz, the last sample grid
# and the last checkpoint (~62 MB) cut into 15 MiB parts. Here: `cat checkpoint.part-* >
# checkpoint.safetensors`; `train --resume` continues it on either device, and resuming it with
# --steps at its own step writes its model files (averaged G, and -raw, when --ema is on).
#
#   OUT=$OUT bash scripts/gpu-train-shapes.sh [SECONDS] [train flags…]   # in a `run` with carry [".gpu"]
#
# Needs the bundle (scripts/gpu-bundle.sh). The encoder is .gpu/encoder.safetensors when there
# (copy the one the CPU runs use there before the call, so the runs compare), else the shipped
# model's. Default flags: the shipped recipe's (scripts/train_default.sh, docs/RESULTS.md
# session 15). The data is made there (12,000 images, seed 0: the same images
# as `data make shapes --images 12000 --seed 0` here).
set -u
out=${OUT:-/tmp/out}
mkdir -p "$out"
seconds=${1:-360}
shift $(($# > 0 ? 1 : 0))
flags=("$@")
# the shipped recipe's GAN flags (scripts/train_default.sh), pooled classifier and twin included
[ ${#flags[@]} -gt 0 ] || flags=(--classifier 1 --classifier-pool --classifier-twin --lr-d-scale 4 --d-act-after-deep
  --ema 0.999 --mode-seeking 0.1 --mode-seeking-cell 8 --mode-seeking-target 0.25 --d-shift 4)
. scripts/gpu-unpack.sh
[ -n "$cli" ] || { echo "gpu-train-shapes: no .gpu/bin/bin-text2img: run scripts/gpu-bundle.sh and carry .gpu" >&2; exit 2; }
enc=.gpu/encoder.safetensors
[ -f "$enc" ] || enc=weights/default.safetensors
# GPU_TRAIN_DEVICE=cpu GPU_TRAIN_EVERY=10 dry-runs the script on a machine without a GPU.
device=${GPU_TRAIN_DEVICE:-cuda}
every=${GPU_TRAIN_EVERY:-500}
data=/tmp/gpu-train-shapes-data
run=/tmp/gpu-train-shapes
rm -rf "$run"
log=$out/train.log
"$cli" data make shapes --out "$data" --images 12000 --seed 0 > "$log" 2>&1 \
  || { echo "gpu-train-shapes: data make failed (see train.log)" >&2; exit 1; }
echo "encoder $enc; flags ${flags[*]}; ${seconds}s" | tee -a "$log"
# Far more steps than the time allows: the run ends at the timeout, its last checkpoint whole
# (written atomically) and at most $every steps old.
timeout "$seconds" "$cli" train --device "$device" --config shapes --data "$data" --encoder "$enc" --out "$run" \
  --steps 1000000 --batch 64 --seed 0 --sample-every $((2 * every)) --checkpoint-every "$every" \
  -q "${flags[@]}" >> "$log" 2>&1
rc=$?
[ "$rc" = 124 ] || echo "gpu-train-shapes: train exited with $rc before the timeout" | tee -a "$log"
tail -1 "$run/log.jsonl" 2>/dev/null | tee -a "$log"
gzip -c "$run/log.jsonl" > "$out/log.jsonl.gz" 2>/dev/null
grid=$(ls "$run"/samples_*.png 2>/dev/null | sort | tail -1)
[ -n "$grid" ] && cp "$grid" "$out/"
[ -f "$run/checkpoint.safetensors" ] && split -b 15M -d "$run/checkpoint.safetensors" "$out/checkpoint.part-"
ls -la "$out" | tee -a "$log"
[ "$rc" = 124 ]
