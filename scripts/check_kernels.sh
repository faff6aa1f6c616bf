#!/usr/bin/env bash
# Compiles every kernels/*.cu with the pinned nvcc (scripts/setup_nvcc.sh) without any GPU:
# PTX for compute_80 and compute_90, and a cubin for sm_90 with ptxas's resource usage. Prints
# registers, shared memory, stack and spills per kernel; fails on any compile error and on any
# kernel that spills unless kernels/SPILL_ALLOW.txt names it with a reason.
# Usage: bash scripts/check_kernels.sh          (NVCC=/path/to/nvcc to use another nvcc)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
nvcc=${NVCC:-$(bash scripts/setup_nvcc.sh | tail -1)}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
allow=$(grep -v '^#' kernels/SPILL_ALLOW.txt 2>/dev/null | awk 'NF >= 2 {print $1}' || true)
status=0
printf '%-28s %-18s %5s %8s %6s %6s %6s\n' kernel file regs smem stack spillS spillL
for cu in kernels/*.cu; do
  stem=$(basename "$cu" .cu)
  for arch in compute_80 compute_90; do
    if ! "$nvcc" -ptx -O3 -std=c++17 -arch=$arch -I kernels -o "$tmp/$stem.$arch.ptx" "$cu" 2> "$tmp/err"; then
      echo "FAIL: $cu does not compile to PTX for $arch:"; cat "$tmp/err"; status=1
    fi
  done
  if ! "$nvcc" -cubin -O3 -std=c++17 -arch=sm_90 --resource-usage -I kernels -o "$tmp/$stem.cubin" "$cu" \
      > "$tmp/usage" 2>&1; then
    echo "FAIL: $cu does not compile for sm_90:"; cat "$tmp/usage"; status=1; continue
  fi
  # ptxas prints, per entry: "Compiling entry function 'k'", "Function properties for k",
  # "N bytes stack frame, S bytes spill stores, L bytes spill loads", "Used R registers, ... M bytes smem"
  rows=$(awk -v file="$stem" '
    /Compiling entry function/ { match($0, /'"'"'[^'"'"']+'"'"'/); k = substr($0, RSTART + 1, RLENGTH - 2); entry[k] = 1 }
    /Function properties for/ { cur = $NF }
    /bytes stack frame/ { stack[cur] = $1; ss[cur] = $5; sl[cur] = $9 }
    /Used [0-9]+ registers/ {
      for (i = 1; i <= NF; i++) { if ($(i + 1) == "registers,") regs[k] = $i; if ($(i + 1) == "bytes" && $(i + 2) ~ /^smem/) smem[k] = $i }
    }
    END { for (k in entry) printf "%s %s %s %s %s %s %s\n", k, file, regs[k] + 0, smem[k] + 0, stack[k] + 0, ss[k] + 0, sl[k] + 0 }
  ' "$tmp/usage" | sort)
  while read -r k f r m st s l; do
    [ -n "$k" ] || continue
    printf '%-28s %-18s %5s %8s %6s %6s %6s\n' "$k" "$f" "$r" "$m" "$st" "$s" "$l"
    if [ "$s" != 0 ] || [ "$l" != 0 ]; then
      if grep -qx "$k" <<< "$allow"; then echo "  (spills, allowed by kernels/SPILL_ALLOW.txt)"
      else echo "FAIL: $k spills registers ($s bytes stored, $l loaded); fix it or name it in kernels/SPILL_ALLOW.txt"; status=1; fi
    fi
  done <<< "$rows"
done
[ $status = 0 ] && echo "all kernels compile (compute_80, compute_90 PTX; sm_90 cubin); no unexpected spills"
exit $status
