#!/usr/bin/env bash
# Sourced by the GPU scripts: unpacks the executables scripts/gpu-bundle.sh gzipped in .gpu/bin
# (kept gzipped there so that the bundle and the tracked tree fit the run tool's 64 MiB), and
# sets `cli` to the bundle's text2img (empty when there is none).
for z in .gpu/bin/*.gz; do
  [ -e "$z" ] || continue
  gunzip -f "$z" && chmod +x "${z%.gz}"
done
cli=$(ls .gpu/bin/bin-text2img* 2>/dev/null | head -1)
