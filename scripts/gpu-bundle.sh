#!/usr/bin/env bash
# Builds what the GPU machine runs (it has no Rust toolchain) and puts it in .gpu/bin: the CUDA
# test suites (test-cuda_*) and the CLI (bin-text2img, for `bench --device cuda`), release, with
# the CUDA feature, stripped of debug info. The `run` tool carries at most 64 MiB, so this takes
# only those executables (about 4 MB each stripped; the whole bundle of every test was 1.4 GB).
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
strip --strip-debug .gpu/bin/*
size=$(du -sm .gpu | cut -f1)
echo "gpu-bundle: .gpu is ${size} MiB"
[ "$size" -lt 60 ] || { echo "gpu-bundle: over the 64 MiB the run tool carries" >&2; exit 1; }
