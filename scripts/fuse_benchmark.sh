#!/usr/bin/env bash
# Table 1 fused against per cell (issue 14): the same `bench run --table 1` twice, into two fresh
# stores, fused (the default) then --no-fuse, one after the other on an otherwise idle machine;
# prints both wall times, their ratio, and how far the per-image rows of the two runs differ.
#
#   bash scripts/fuse_benchmark.sh [extra bench run options...]
#   e.g. bash scripts/fuse_benchmark.sh --preset cpu --dataset celeba --data-root DIR \
#        --checkpoint results/checkpoints/celeba-cpu-coupling.pt
#
# The `cpu` preset's Table 1 takes about 30 + 45 minutes on a 2-core CPU. WORK (default a new
# temporary folder) keeps both stores and logs; nothing under results/ or reports/ is touched.
set -euo pipefail
WORK="${WORK:-$(mktemp -d -t bench-fuse-XXXXXX)}"
declare -A WALL
for mode in fuse no-fuse; do
  start=$(date +%s.%N)
  bench run --table 1 --no-progress --results "$WORK/$mode" --out "$WORK/$mode-reports" \
    --"$mode" "$@" > "$WORK/$mode.log" 2>&1 || { echo "bench run --$mode failed: see $WORK/$mode.log"; exit 1; }
  WALL[$mode]=$(python -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
  echo "--$mode: ${WALL[$mode]} s wall ($(tail -n 3 "$WORK/$mode.log" | head -n 1))"
done
python - "$WORK" "${WALL[fuse]}" "${WALL[no-fuse]}" <<'PY'
import sys
from pathlib import Path

import numpy as np

from bench import runner

work, fused_s, cells_s = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
runs = {m: runner.list_runs(work / m)[-1] for m in ("fuse", "no-fuse")}
keys = ["stage", "method", "task", "weight", "image"]
a, b = (runner.read_cells(runs[m]).sort_values(keys).reset_index(drop=True) for m in runs)
assert a[keys].fillna(-1).equals(b[keys].fillna(-1)), "the two runs stored different rows"
d_psnr = (a["psnr"] - b["psnr"]).abs()
d_ssim = (a["ssim"] - b["ssim"]).abs()
sel = [runner.read_manifest(runs[m])["selection"] for m in runs]
print(f"rows: {len(a)}; |dPSNR| mean {d_psnr.mean():.4f} dB, max {d_psnr.max():.4f} dB, "
      f"{(d_psnr > 0.01).mean():.1%} above 0.01 dB; |dSSIM| max {d_ssim.max():.5f}; "
      f"diverged equal: {bool((a['diverged'] == b['diverged']).all())}; "
      f"selected weights equal: {sel[0] == sel[1]}")
print(f"Table 1: fused {fused_s:.0f} s, per cell {cells_s:.0f} s: fused {cells_s / fused_s:.2f}x faster")
PY
echo "stores and logs: $WORK"
