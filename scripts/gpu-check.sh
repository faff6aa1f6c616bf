#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root of a copy of the tree that includes .gpu/
# (made here by `bash scripts/gpu-bundle.sh`). Builds nothing: runs every .gpu/bin/test-cuda_*
# with --include-ignored --test-threads=1 (the GPU tests), any GPU criterion bench
# (.gpu/bin/bench-cuda*), and `text2img bench --device cuda` (batch 1: 1000 replays; 64 and 256),
# logs each to $OUT (default /tmp/out), and prints a short table last.
# Fails cleanly (message, exit 2) when there is no GPU or no bundle; exit 1 when a test fails.
set -u
out=${OUT:-/tmp/out}
mkdir -p "$out"
per_test=${GPU_CHECK_TEST_TIMEOUT:-240}
per_bench=${GPU_CHECK_BENCH_TIMEOUT:-120}
fail() { echo "gpu-check: $*" | tee "$out/gpu-check.error" >&2; exit 2; }
# The run tool's limit is 540 s: later steps are skipped (and say so in the table) once this many
# seconds have gone, so the table is always printed.
budget=${GPU_CHECK_BUDGET:-420}
late() { [ "$SECONDS" -ge "$budget" ]; }
# Each later step gets at most its usual limit and what is left before the hard stop (budget
# + 100 s), and is skipped (a table row says so) past the budget.
cap() { local left=$((budget + 100 - SECONDS)); [ "$1" -lt "$left" ] && echo "$1" || echo "$left"; }
skip() { row "$1" skipped "over the ${budget}s budget"; }

ls .gpu/bin/test-cuda_* > /dev/null 2>&1 || fail "no .gpu/bin/test-cuda_* here ($(pwd)): run scripts/gpu-bundle.sh first and carry .gpu"
command -v nvidia-smi > /dev/null 2>&1 || fail "nvidia-smi not found: no NVIDIA driver on this machine, so no GPU to check"
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1) \
  || fail "nvidia-smi finds no GPU: $gpu"
echo "$gpu" | tee "$out/gpu.txt"
date -u +%FT%TZ > "$out/date.txt"

status=0
table=""
row() { table+=$(printf '%-44s %-10s %s' "$1" "$2" "$3")$'\n'; }
# r = $2 when exit status $1 is 0, else FAIL(status) and the check fails.
verdict() { if [ "$1" = 0 ]; then r=$2; else r="FAIL($1)"; status=1; fi; }
# the CUDA suites, their GPU tests included (they are #[ignore]d where there is no GPU); the CPU
# suites are run by CI, not on this machine's scarce minutes
for t in .gpu/bin/test-cuda_*; do
  [ -x "$t" ] || continue
  n=$(basename "$t")
  start=$SECONDS
  timeout "$(cap "$per_test")" "$t" --include-ignored --test-threads=1 > "$out/$n.log" 2>&1
  verdict $? ok
  res=$(grep -E '^test result' "$out/$n.log" | tail -1 | sed 's/^test result: //; s/; finished in.*//')
  row "$n" "$r" "$((SECONDS - start))s ${res:-no result line (see $n.log)}"
done
# only GPU criterion benches (bench-cuda*): the CPU ones would spend the machine's minutes on
# what this machine measures as well
for b in .gpu/bin/bench-cuda*; do
  [ -x "$b" ] || continue
  n=$(basename "$b")
  start=$SECONDS
  # criterion: a short measurement per bench so the whole check stays well inside ten minutes
  timeout "$per_bench" "$b" --bench --warm-up-time 1 --measurement-time 2 > "$out/$n.log" 2>&1
  verdict $? done
  row "$n" "$r" "$((SECONDS - start))s, see $n.log"
done
cli=$(ls .gpu/bin/bin-text2img* 2>/dev/null | head -1)
# The end-to-end benchmark: caption → image replays on the GPU (reed-cub, synthetic weights);
# batch 1: the latency target (median of 1000 replays), eager and as a CUDA graph; 64 and 256:
# throughput, fewer replays.
for spec in "1 1000 50" "64,256 50 5"; do
  [ -n "$cli" ] || break
  set -- $spec
  name="text2img bench --device cuda -b $1"
  if late; then skip "$name"; continue; fi
  start=$SECONDS
  timeout "$(cap "$per_bench")" "$cli" bench --device cuda -m reed-cub -b "$1" -r "$2" --warmup "$3" \
    > "$out/bench-cuda-b$1.log" 2>&1
  verdict $? done
  row "$name" "$r" "$((SECONDS - start))s, see bench-cuda-b$1.log"
done
# GAN training on the GPU (issue 8): 300 steps of the `shapes` config at batch 64 from the
# shipped encoder, and 20 steps on this machine's CPU for the ratio; images/s from each log.
data=/tmp/gpu-check-shapes
[ -n "$cli" ] && timeout 60 "$cli" data make shapes --out "$data" --images 2000 --seed 0 > "$out/data.log" 2>&1
for spec in "cuda 300" "cpu 20"; do
  [ -n "$cli" ] || break
  set -- $spec
  name="train --device $1 ($2 steps)"
  if late; then skip "$name"; continue; fi
  start=$SECONDS
  timeout "$(cap "$per_bench")" "$cli" train --device "$1" --config shapes --data "$data" \
    --encoder weights/default.safetensors --out "$out/train-$1" --steps "$2" --batch 64 \
    --sample-every "$2" --checkpoint-every "$2" -q > "$out/train-$1.log" 2>&1
  verdict $? done
  ips=$(tail -1 "$out/train-$1/log.jsonl" 2>/dev/null | python3 -c 'import json,sys; print("%.0f images/s" % json.load(sys.stdin)["images_per_s"])' 2>/dev/null)
  row "$name" "$r" "$((SECONDS - start))s, ${ips:-no log}"
done
# Issue 8's benchmark: GAN-INT-CLS iterations at batch 64, reed-cub sizes, ours (train --device
# cuda from a synthetic reed-cub encoder) against PyTorch eager on the same card
# (scripts/bench_train.py, the reference script's iteration). Needs python3 with torch there.
name="GAN iteration reed-cub b64: ours/PyTorch"
if [ -z "$cli" ] || ! python3 -c "import torch, numpy" 2> /dev/null; then
  row "$name" skipped "no CLI in the bundle, or no torch and numpy for python3"
elif late; then
  skip "$name"
else
  start=$SECONDS
  "$cli" init-weights --config reed-cub --networks encoder -q -o /tmp/gpu-check-rc-encoder.safetensors
  timeout "$(cap 240)" python3 scripts/bench_train.py --device cuda --config reed-cub --batch 64 --steps 10 \
    --threads 16 --ours "$cli" --data "$data" --encoder /tmp/gpu-check-rc-encoder.safetensors --json \
    > "$out/bench-train-cuda.log" 2>&1
  verdict $? done
  ratio=$(grep -o '"ratio_steady_ours_over_pytorch": [0-9.]*' "$out/bench-train-cuda.log" | cut -d' ' -f2)
  row "$name" "$r" "$((SECONDS - start))s, ${ratio:-?}x (see bench-train-cuda.log)"
fi
grep -h "philox seed" "$out"/test-cuda_ops*.log 2>/dev/null | tee "$out/philox.txt"
echo
echo "== gpu-check on $gpu"
printf '%-44s %-10s %s\n' executable result detail
printf '%s' "$table" | tee "$out/table.txt"
exit $status
