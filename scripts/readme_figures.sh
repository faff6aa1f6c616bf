#!/usr/bin/env bash
# Regenerates the README's pictures and the eval table from the shipped weights (weights/):
# docs/img/grid.png (captions down, seeds across), docs/img/interp-captions.png,
# docs/img/interp-noise.png, docs/img/style-transfer.png (held-out images on four backgrounds as
# styles, down; captions that name no background, across), docs/img/eval.md (+ eval.json) and
# the ROC curves docs/img/roc.png / roc.csv. Usage: scripts/readme_figures.sh [DATA]
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
# Style images: the first held-out image on each of four backgrounds (attributes.jsonl).
mapfile -t styles < <(python3 - "$data/attributes.jsonl" <<'PY'
import json, sys
want, seen = ["blue", "yellow", "white", "black"], {}
for line in open(sys.argv[1]):
    a = json.loads(line)
    if a["held_out"] and a["background"] in want and a["background"] not in seen:
        seen[a["background"]] = a["image"]
for b in want:
    print("--style"); print(seen[b])
PY
)
styles=("${styles[@]/#images/$data/images}")
"$bin" style-transfer "a large red star" "a medium green heart" "a large purple diamond" "a small orange circle" \
    "${styles[@]}" -o docs/img/style-transfer.png
"$bin" eval --data "$data" --style --roc docs/img/roc --json docs/img/eval.json > docs/img/eval.md
cat docs/img/eval.md
