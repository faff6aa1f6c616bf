#!/usr/bin/env bash
# Reproduces a default model from nothing on the CPU: the shapes dataset, the text encoder
# (DS-SJE), GAN-INT-CLS, and the export. Usage: scripts/train_default.sh [OUT] [ENC_STEPS] [GAN_STEPS]
# Seeds are fixed, so the same machine gives the same weights. Times on the 2-core dev machine are
# in docs/PERF.md.
set -euo pipefail
out=${1:-runs/default}
enc_steps=${2:-3000}
gan_steps=${3:-3000}
bin=${T2I_BIN:-target/release/text2img}
[ -x "$bin" ] || cargo build --release
mkdir -p "$out"
[ -d "$out/shapes" ] || "$bin" data make shapes --out "$out/shapes" --images 12000 --seed 0
"$bin" train-encoder --config shapes --data "$out/shapes" --out "$out/enc" --steps "$enc_steps" \
    --eval-every 500 --seed 0 ${RESUME_ENC:+--resume "$out/enc/checkpoint.safetensors"}
"$bin" train --data "$out/shapes" --encoder "$out/enc/encoder.safetensors" --out "$out/gan" \
    --steps "$gan_steps" --batch 64 --sample-every 250 --checkpoint-every 100 --seed 0 --export-dtype f16 \
    ${RESUME_GAN:+--resume "$out/gan/checkpoint.safetensors"}
echo "model: $out/gan/model.safetensors"
