#!/usr/bin/env bash
# Creates .venv at the repository root with the PyTorch reference tooling
# (scripts/reference.py, scripts/bench_peers.py). Not needed to build or test the Rust engine.
# Usage: bash scripts/setup_venv.sh        (re-running reuses an existing .venv)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python3 -m venv .venv
.venv/bin/pip install --upgrade --quiet pip
.venv/bin/pip install -r scripts/requirements.txt
.venv/bin/python -c 'import torch, numpy, safetensors, onnx, onnxruntime; print("torch", torch.__version__, "numpy", numpy.__version__, "onnxruntime", onnxruntime.__version__)'
