#!/usr/bin/env bash
# Builds what the GPU machine runs (it has no Rust toolchain) and puts it in .gpu/bin: the CUDA
# test suites (test-cuda_*) and the CLI (bin-text2img, for `bench --device cuda`), release, with
# the CUDA feature, stripped and gzipped. The `run` tool carries at most 64 MiB, tracked tree
# included, so this takes only those executables (the whole bundle of every test was 1.4 GB).
# Usage, from the repository root: bash scripts/gpu-bundle.sh   (then scripts/gpu-check.sh there)
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
suites=$(ls tests/cuda_*.rs | xargs -n1 basename | sed 's/\.rs$//')
args=(--bin text2img)
for s in $suites; do args+=(--test "$s"); done
rm -rf .gpu && mkdir -p .gpu/bin
msgs=$(mktemp)
cargo build --release --features cuda "${args[@]}" --message-format=json > "$msgs"
python3 - "$msgs" <<'PY'
import json, shutil, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    tag = "test" if m["profile"]["test"] else "bin"
    dst = f".gpu/bin/{tag}-{m['target']['name']}"
    shutil.copy2(m["executable"], dst)
    print(dst)
PY
rm -f "$msgs"
strip --strip-all .gpu/bin/*
# The embedded PTX (three targets per kernel) makes each executable 10-13 MB even stripped; with
# the tracked tree (~37 MB, weights and figures) that passed the run tool's 64 MiB. Gzipped they
# are ~9 MB together; the GPU scripts unpack them there (scripts/gpu-unpack.sh).
gzip -9 .gpu/bin/*
size=$(du -sm .gpu | cut -f1)
echo "gpu-bundle: .gpu is ${size} MiB"
[ "$size" -lt 20 ] || { echo "gpu-bundle: over 20 MiB: with the tracked tree (~37 MiB) over the 64 MiB the run tool carries" >&2; exit 1; }
