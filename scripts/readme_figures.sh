#!/usr/bin/env bash
# Regenerates the README's pictures and the eval table from the shipped weights (weights/):
# docs/img/grid.png (captions down, seeds across), docs/img/interp-captions.png,
# docs/img/interp-noise.png, docs/img/eval.md (+ eval.json) and the ROC curves docs/img/roc.png /
# roc.csv. Usage: scripts/readme_figures.sh [DATA]
# DATA is a shapes dataset for the eval's real-image rows (made, 12,000 images, if absent).
set -euo pipefail
bin=${T2I_BIN:-target/release/text2img}
[ -x "$bin" ] || cargo build --release
data=${1:-/tmp/text2img-shapes}
[ -d "$data" ] || "$bin" data make shapes --out "$data" --images 12000 --seed 0
"$bin" generate --prompt-file docs/img/captions.txt -b 8 --grid -s 0 -o docs/img/grid.png
"$bin" interpolate "a large red circle on a blue background" "a large yellow star on a green background" \
    -n 8 -s 0 -o docs/img/interp-captions.png
"$bin" interpolate "a medium white heart on a purple background" -n 8 -s 3 -o docs/img/interp-noise.png
"$bin" eval --data "$data" --style --roc docs/img/roc --json docs/img/eval.json > docs/img/eval.md
cat docs/img/eval.md
