#!/usr/bin/env bash
# The disentangling comparison (ICML paper §5.3) on `shapes`: the four GAN variants trained for
# the same short length, a style encoder S for each, then `eval --style` (ROC AUC for same
# background / same pose pairs, S against the caption baseline).
#
#   scripts/style_eval.sh [OUT] [GAN_STEPS] [STYLE_STEPS]
#
# Needs the default recipe's dataset, encoder and judge (scripts/train_default.sh), found under
# RUN (default runs/default). A variant whose OUT/<variant>/model.safetensors exists is not
# retrained (so the GAN-INT-CLS variant can be the default run's own checkpoint at GAN_STEPS,
# exported with `text2img train ... --resume CKPT --steps GAN_STEPS`).
set -euo pipefail
out=${1:-runs/style}
steps=${2:-1000}
style_steps=${3:-1000}
run=${RUN:-runs/default}
bin=${T2I_BIN:-target/release/text2img}
[ -x "$bin" ] || cargo build --release
for v in gan gan-cls gan-int gan-int-cls; do
    case $v in
        gan) flags="--no-cls --no-int" ;;
        gan-cls) flags="--no-int" ;;
        gan-int) flags="--no-cls" ;;
        *) flags="" ;;
    esac
    dir=$out/$v
    if [ ! -f "$dir/model.safetensors" ]; then
        # shellcheck disable=SC2086
        "$bin" -q train --config shapes --data "$run/shapes" --encoder "$run/enc/encoder.safetensors" --out "$dir" \
            --steps "$steps" --batch 64 --sample-every 0 --checkpoint-every 250 --seed 0 $flags
    fi
    [ -f "$dir/style/style.safetensors" ] || "$bin" -q train-style -m "$dir/model.safetensors" \
        --data "$run/shapes" --out "$dir/style" --steps "$style_steps" --seed 0
    echo "== $v ($steps GAN steps, S $style_steps steps)"
    "$bin" eval -m "$dir/model.safetensors" --judge "$run/judge.safetensors" \
        --image-encoder "$run/enc/image_encoder.safetensors" --data "$run/shapes" \
        --style --style-model "$dir/style/style.safetensors" --roc "$dir/roc" --json "$dir/eval.json"
done
