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

. scripts/gpu-unpack.sh
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
# The end-to-end benchmark: caption → image replays on the GPU (reed-cub, synthetic weights);
# batch 1: the latency target (median of 1000 replays), eager and as a CUDA graph; 64 and 256:
# throughput, fewer replays; each with the convolutions in f32 and on the tensor cores (bf16).
# Then PyTorch on the same card and weights (scripts/bench_peers_cuda.py: eager, TF32, bf16
# channels-last, each also as a CUDA graph), then ours on f16-stored weights.
for spec in "1 1000 50 reed-cub f32 f32,bf16" "64,256 50 5 reed-cub f32 f32,bf16" "peers" \
  "1,64 100 10 /tmp/gpu-check-rc-f16.safetensors f16 f32"; do
  [ -n "$cli" ] || break
  set -- $spec
  if [ "$1" = peers ]; then
    name="PyTorch caption→image (bench_peers_cuda.py)"
    if ! python3 -c "import torch, numpy" 2> /dev/null; then row "$name" skipped "no torch and numpy for python3"; continue; fi
    if late; then skip "$name"; continue; fi
    start=$SECONDS
    timeout "$(cap 200)" python3 scripts/bench_peers_cuda.py --config reed-cub --batch 1,64,256 \
      --reps 1000,50,50 --warmup 50,5,5 --budget 150 > "$out/bench-peers-cuda.jsonl" 2> "$out/bench-peers-cuda.log"
    verdict $? done
    row "$name" "$r" "$((SECONDS - start))s, see bench-peers-cuda.log"
    continue
  fi
  name="text2img bench --device cuda -b $1 ($5)"
  tag="b${1//,/-}-$5"
  if late; then skip "$name"; continue; fi
  [ "$5" = f16 ] && "$cli" init-weights --config reed-cub --networks encoder,generator --dtype f16 -q -o "$4"
  start=$SECONDS
  timeout "$(cap "$per_bench")" "$cli" bench --device cuda -m "$4" -b "$1" -r "$2" --warmup "$3" \
    --precision "$6" --format jsonl > "$out/bench-cuda-$tag.jsonl" 2> "$out/bench-cuda-$tag.log"
  verdict $? done
  row "$name" "$r" "$((SECONDS - start))s, see bench-cuda-$tag.jsonl"
done
# Per-kernel device times of one caption → image forward (batch 1 and 64), from ncu when the
# machine has it: where the time goes, for the next kernel to rewrite.
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
for b in 1 64; do
  [ -n "$cli" ] && [ -n "$ncu" ] || break
  if late; then skip "ncu per-kernel times b$b"; continue; fi
  timeout "$(cap 60)" "$ncu" --csv --page raw --metrics gpu__time_duration.sum,launch__grid_size,launch__registers_per_thread \
    -c 400 "$cli" bench --device cuda -m reed-cub -b "$b" -r 1 --warmup 0 > "/tmp/gpu-check-ncu-b$b.csv" 2> /dev/null
  python3 scripts/gpu_summary.py --ncu "/tmp/gpu-check-ncu-b$b.csv" > "$out/ncu-b$b.txt" 2>&1
  row "ncu per-kernel times b$b" done "see ncu-b$b.txt"
done
# GAN training on the GPU (issue 8): 300 steps of the `shapes` config at batch 64 from the
# shipped encoder with the shipped recipe's flags (scripts/train_default.sh), and 20 steps on
# this machine's CPU for the ratio; images/s from each log.
recipe=(--classifier 1 --classifier-pool --classifier-twin --lr-d-scale 4 --d-act-after-deep --ema 0.999
  --mode-seeking 0.1 --mode-seeking-cell 8 --mode-seeking-target 0.25 --d-shift 4)
data=/tmp/gpu-check-shapes
rm -rf /tmp/gpu-check-train-cuda /tmp/gpu-check-train-cpu
[ -n "$cli" ] && timeout 60 "$cli" data make shapes --out "$data" --images 2000 --seed 0 > "$out/data.log" 2>&1
for spec in "cuda 300" "cpu 20"; do
  [ -n "$cli" ] || break
  set -- $spec
  name="train --device $1 ($2 steps)"
  if late; then skip "$name"; continue; fi
  start=$SECONDS
  timeout "$(cap "$per_bench")" "$cli" train --device "$1" --config shapes --data "$data" \
    --encoder weights/default.safetensors --out "/tmp/gpu-check-train-$1" --steps "$2" --batch 64 \
    --sample-every "$2" --checkpoint-every "$2" -q "${recipe[@]}" > "$out/train-$1.log" 2>&1
  verdict $? done
  ips=$(tail -1 "/tmp/gpu-check-train-$1/log.jsonl" 2>/dev/null | python3 -c 'import json,sys; print("%.0f images/s" % json.load(sys.stdin)["images_per_s"])' 2>/dev/null)
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
# ours against PyTorch at each batch: the latency and throughput table of issue 7
python3 scripts/gpu_summary.py "$out" > "$out/summary.txt" 2>&1
echo
cat "$out/summary.txt"
echo
echo "== gpu-check on $gpu"
printf '%-44s %-10s %s\n' executable result detail
printf '%s' "$table" | tee "$out/table.txt"
# The run tool brings back at most 8 files: every log goes into one archive beside the table,
# the summary and the per-kernel times (the archive is written outside $out first, so tar does
# not read the folder it is writing into).
keep() { case "$1" in table.txt | summary.txt | ncu-b*.txt) return 0 ;; *) return 1 ;; esac; }
logs=$(mktemp /tmp/gpu-check-logs.XXXXXX)
(cd "$out" && tar czf "$logs" --exclude=table.txt --exclude=summary.txt --exclude='ncu-b*.txt' .) \
  && for f in $(cd "$out" && find . -type f); do keep "$(basename "$f")" || rm -f "$out/$f"; done \
  && find "$out" -mindepth 1 -type d -empty -delete && mv "$logs" "$out/logs.tar.gz"
exit $status
