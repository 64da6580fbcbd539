#!/usr/bin/env bash
# The `gpu` preset's pipeline on one CUDA GPU (sized for one H200-class GPU; NOT YET RUN on a
# GPU: none has been lent so far). Run it from the repository root of a checkout:
#
#   bash scripts/gpu_table.sh [STEP ...]        STEP: train table1 table2 perf (default: all four)
#
# What each step does, its time limit (each step runs under `timeout`; a step that reaches its
# limit is interrupted with SIGINT, so training saves its checkpoint and a Table 1 run keeps the
# cells it finished: rerunning the same step resumes) and what it is expected to take:
#
#   setup   nvidia-smi, torch/CUDA versions; installs bench (editable, --no-deps: the device
#           machine has no network) if it is not importable                         ~10-30 s
#   train   bench train --preset gpu: the paper's width-512 flow, 64 epochs at batch 512 on
#           the CelebA training images present (15,000 in the development copy)
#           limit TRAIN_S=300 s; expected 2.5-4.7 min (config.py's `gpu` preset: the arithmetic)
#   table1  bench run --table 1 --preset gpu: every method x task, weights grid-searched on 32
#           valid images, 192 test images, 1500 iterations; --max-batch 512 rows per fused
#           solve so that cells finish (and are stored) every ~1-2 min, not all at the end
#           limit TABLE1_S=330 s. Expected: ~4,540 latent solves x 1500 iterations = 6.8M
#           solver row-iterations (~2/3 of a training step each); at the 5,000-10,000 per s
#           assumed for training that is ~8-15 min at float32, so expect it to stop partway;
#           its log prints bench's own estimate, timed on the device. TABLE1_ARGS adds options
#           (e.g. "--weights paper" skips the grid: ~2,500 solves; "--precision tf32": TF32
#           tensor cores, faster but a run of its own; the default is float32, the protocol)
#   table2  bench ablation --timing --preset paper --iters 300 on CUDA (Table 2: width 512,
#           batch 128; 300 timed iterations instead of the paper's 1500 to fit)
#           limit TABLE2_S=60 s; expected ~20-40 s
#   perf    bench perf --bf16 on CUDA (solver, generation, training vs the matmul rate;
#           bfloat16 vs float32)                          limit PERF_S=60 s; expected ~20-40 s
#
# The device tool runs at most 10 minutes per command and lends 15 minutes in all (machine start
# included), so the script also keeps within BUDGET_S (default 560 s, from its start): each
# step's limit is cut to what is left of it (20 s kept back for packing; a step left under 20 s
# is skipped). Plan two calls: first
#   bash scripts/gpu_table.sh train table1            (timeout_s 600; ~9.5 min: training up
#                                                      to 300 s, Table 1 the ~220 s left)
# then, at once on the still-warm machine or on a fresh one (needs no state from the first):
#   bash scripts/gpu_table.sh table2 perf             (timeout_s 240; ~2-3 min)
# With more time (another machine): BUDGET_S=900 bash scripts/gpu_table.sh (all four steps).
#
# Inputs (environment): DATA_ROOT, the CelebA folder (default $BENCH_CELEBA, else
# shared/data/celeba inside the checkout: the device tool sends only the checkout and at most
# 64 MiB of it); PYTHON (default python3); REPORTS (default reports/gpu); RESULTS_GPU (default
# results/gpu: Table 2's and perf's raw results; the checkpoint and the Table 1 run go to
# results/checkpoints/celeba-gpu-coupling.* and results/runs/celeba-gpu-*); TRAIN_S, TABLE1_S,
# TABLE2_S, PERF_S, BUDGET_S (seconds); TABLE1_MAX_BATCH (default 512); TABLE2_ITERS (300).
#
# Results: commit them under results/ and reports/gpu/, labelled with the device (the summary
# names it; the run's manifest, table2.md and perf.md record it too). With $OUT set (the device tool), the
# reports, the logs, the Table 1 run, the training history and results/gpu are packed into
# $OUT/gpu_results.tar.gz.part-* (15 MiB parts) and $OUT/summary.txt; unpack them here with
#   cat gpu_results.tar.gz.part-* | tar -xzf -
# The checkpoint itself (~390 MB) does not come back.
#
# Exit status: 2 (bad input: no CUDA, no CelebA folder, unknown step, bench not installable)
# before any step runs; else 0 when every step finished, 1 when one failed or timed out.
set -euo pipefail

cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
DATA_ROOT=${DATA_ROOT:-${BENCH_CELEBA:-shared/data/celeba}}
REPORTS=${REPORTS:-reports/gpu}
RESULTS_GPU=${RESULTS_GPU:-results/gpu}
TRAIN_S=${TRAIN_S:-300}
TABLE1_S=${TABLE1_S:-330}
TABLE2_S=${TABLE2_S:-60}
PERF_S=${PERF_S:-60}
BUDGET_S=${BUDGET_S:-560}
TABLE1_MAX_BATCH=${TABLE1_MAX_BATCH:-512}
TABLE2_ITERS=${TABLE2_ITERS:-300}
TABLE1_ARGS=${TABLE1_ARGS:-}
PACK_RESERVE_S=20 # kept back from the budget for packing the results into $OUT
MIN_STEP_S=20     # a step with less time than this left is skipped

bad_input() {
	echo "gpu_table.sh: $*" >&2
	exit 2
}

STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(train table1 table2 perf)
for s in "${STEPS[@]}"; do
	case $s in
	train | table1 | table2 | perf) ;;
	*) bad_input "unknown step '$s': choose from train table1 table2 perf" ;;
	esac
done
wants() { [[ " ${STEPS[*]} " == *" $1 "* ]]; }

START=$SECONDS
echo "== gpu_table.sh: steps ${STEPS[*]}; started $(date -u +%FT%TZ); budget ${BUDGET_S}s"

# ---- setup ---------------------------------------------------------------------------------------
echo "== setup"
if command -v nvidia-smi >/dev/null; then nvidia-smi || true; else echo "nvidia-smi: not found"; fi
"$PY" - <<'EOF' || true
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device 0: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
EOF
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null ||
	bad_input "CUDA is not available here (torch.cuda.is_available() is False or torch is missing): run this on a GPU machine"

if ! "$PY" -c "import bench.cli" 2>/dev/null; then
	echo "bench is not importable: pip install -e . (--no-deps --no-build-isolation: no network here)"
	"$PY" -m pip install -q --no-deps --no-build-isolation -e . ||
		bad_input "pip install -e . failed"
	"$PY" -c "import bench.cli" || bad_input "bench is still not importable (a dependency missing?)"
fi
# the `bench` command of this interpreter (a shell function would not run under `timeout`)
BENCH=("$PY" -c 'import sys; sys.argv[0] = "bench"; from bench.cli import main; main()')
"$PY" -c "import bench; print('bench', bench.__version__)"

if wants train || wants table1; then
	[ -d "$DATA_ROOT/img_align_celeba" ] ||
		bad_input "no CelebA images at $DATA_ROOT/img_align_celeba: set DATA_ROOT to a CelebA folder"
	echo "CelebA: $DATA_ROOT ($(find "$DATA_ROOT/img_align_celeba" -name '*.jpg' | wc -l) images)"
fi
METHODS=()
if wants table1 && ! "$PY" -c "import bm3d" 2>/dev/null; then
	echo "note: the bm3d package is missing here: Table 1 runs without BM3D (a CPU method)"
	METHODS=(--methods csgm,glowip,map,ours)
fi
mkdir -p "$REPORTS/logs" "$RESULTS_GPU"
echo "== setup: $((SECONDS - START))s"

# ---- the steps -----------------------------------------------------------------------------------
declare -A RC TOOK
FAILED=0

run_step() { # NAME LIMIT_S COMMAND...: run under timeout, log to $REPORTS/logs/NAME.log
	local name=$1 limit=$2
	shift 2
	local left=$((BUDGET_S - (SECONDS - START) - PACK_RESERVE_S))
	((limit <= left)) || limit=$left
	if ((limit < MIN_STEP_S)); then
		echo "== $name: skipped (its limit would be ${limit}s: ${left}s left of the ${BUDGET_S}s budget)"
		RC[$name]=skipped TOOK[$name]=0 FAILED=1
		return
	fi
	echo "== $name: started $(date -u +%FT%TZ), limit ${limit}s"
	echo "   bench ${*:4}"
	local t0=$SECONDS rc=0
	timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | tee "$REPORTS/logs/$name.log" || rc=$?
	TOOK[$name]=$((SECONDS - t0))
	case $rc in
	0) RC[$name]=ok ;;
	124 | 137) RC[$name]="timed out (${limit}s)" FAILED=1 ;;
	*) RC[$name]="failed (exit $rc)" FAILED=1 ;;
	esac
	echo "== $name: ${RC[$name]}, ${TOOK[$name]}s"
}

for s in "${STEPS[@]}"; do
	case $s in
	train)
		run_step train "$TRAIN_S" "${BENCH[@]}" train --preset gpu --dataset celeba \
			--data-root "$DATA_ROOT" --device cuda --no-progress
		;;
	table1)
		# shellcheck disable=SC2086 # TABLE1_ARGS: options, split on spaces
		run_step table1 "$TABLE1_S" "${BENCH[@]}" run --table 1 --preset gpu --dataset celeba \
			--data-root "$DATA_ROOT" --device cuda --out "$REPORTS" --no-progress \
			--max-batch "$TABLE1_MAX_BATCH" ${METHODS[@]+"${METHODS[@]}"} $TABLE1_ARGS
		;;
	table2)
		run_step table2 "$TABLE2_S" "${BENCH[@]}" ablation --timing --preset paper \
			--iters "$TABLE2_ITERS" --device cuda --out "$REPORTS" --results "$RESULTS_GPU" \
			--no-progress
		;;
	perf)
		run_step perf "$PERF_S" "${BENCH[@]}" perf --device cuda --bf16 --out "$REPORTS" \
			--results "$RESULTS_GPU"
		;;
	esac
done

# ---- summary -------------------------------------------------------------------------------------
DEVICE=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0))" 2>/dev/null || echo "?")
{
	echo "gpu_table.sh on $DEVICE, finished $(date -u +%FT%TZ), $((SECONDS - START))s in all"
	for s in "${STEPS[@]}"; do
		printf '  %-7s %-24s %5ss\n' "$s" "${RC[$s]:-not run}" "${TOOK[$s]:-0}"
	done
	echo "  reports: $REPORTS/ (logs in $REPORTS/logs/); Table 2 and perf results: $RESULTS_GPU/"
	for f in results/checkpoints/celeba-gpu-coupling.history.csv results/runs/celeba-gpu-*; do
		if [ -e "$f" ]; then echo "  $f"; fi
	done
	echo "  commit them under results/ and $REPORTS/, labelled with the device ($DEVICE)"
} | tee "$REPORTS/logs/summary.txt"

# ---- bring the results back through the device tool's $OUT -----------------------------------------
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
	PACK=("$REPORTS" "$RESULTS_GPU")
	for f in results/checkpoints/celeba-gpu-coupling.history.csv* results/runs/celeba-gpu-*; do
		if [ -e "$f" ]; then PACK+=("$f"); fi
	done
	cp "$REPORTS/logs/summary.txt" "$OUT/summary.txt"
	tar -czf - --exclude='*/cells/select/*.npy' --exclude='*/tmp' --exclude='*.lock' \
		"${PACK[@]}" | split -b 15m - "$OUT/gpu_results.tar.gz.part-"
	PARTS=$(find "$OUT" -name 'gpu_results.tar.gz.part-*' | wc -l)
	echo "packed into $OUT: $PARTS part(s) of gpu_results.tar.gz and summary.txt"
	((PARTS <= 7)) || echo "warning: $PARTS parts: the device tool returns at most 8 files"
fi
exit "$FAILED"
