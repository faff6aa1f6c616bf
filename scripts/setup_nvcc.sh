#!/usr/bin/env bash
# Installs NVIDIA's CUDA compiler (nvcc, ptxas, the NVVM back end) from PyPI into .nvcc at the
# repository root and prints the nvcc path. No GPU or driver is needed. The four pins match the GPU
# machine's CUDA 13.0 driver (580): a newer NVVM emits PTX that a 13.0 driver cannot load.
# Usage: bash scripts/setup_nvcc.sh     (re-running reuses an existing .nvcc)
#        export NVCC=$(bash scripts/setup_nvcc.sh | tail -1)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
pins=(nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96)
[ -x .nvcc/bin/pip ] || python3 -m venv .nvcc
# pip prints nothing when everything is already installed at these versions
.nvcc/bin/pip install --quiet --disable-pip-version-check "${pins[@]}" >&2
nvcc=$(ls -d .nvcc/lib/python3*/site-packages/nvidia/cu13/bin/nvcc 2>/dev/null | head -1)
if [ -z "$nvcc" ] || [ ! -x "$nvcc" ]; then
  echo "setup_nvcc: nvcc not found under .nvcc after installing ${pins[*]}" >&2
  exit 1
fi
"$root/$nvcc" --version | tail -2 >&2
echo "$root/$nvcc"
