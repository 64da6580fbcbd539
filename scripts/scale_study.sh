#!/usr/bin/env bash
# The scale study (docs/PROTOCOL.md §10) on a 2-core CPU, part by part, each resumable:
#   bash scripts/scale_study.sh /path/to/celeba [PART ...]
# PARTS: overhead replication budget train-epochs sweep-epochs train-wide sweep-wide
# (default: all, in that order). The baseline is the Table 1 run reports/table1.md was made
# from; reports/scale.md is rebuilt after each part. Times on the development machine (2 CPUs)
# are in reports/README.md ("The scale study"). Environment (lists space-separated):
# SCALE_THREADS (torch threads per command, default 2; 1 lets two parts share 2 cores),
# SCALE_EPOCHS (the kept epochs, in the order the sweep tests them), SCALE_WIDTHS,
# SCALE_MINUTES (the wide flows' training budget). A training whose checkpoint exists is kept
# as it is: SCALE_MINUTES, and new SCALE_EPOCHS, then apply only after deleting it.
set -euo pipefail
DATA=${1:?usage: bash scripts/scale_study.sh CELEBA_DIR [PART ...]}
shift
PARTS=${*:-overhead replication budget train-epochs sweep-epochs train-wide sweep-wide}
CK=results/checkpoints
SWEEP=$CK/celeba-cpu-coupling-sweep.pt
read -r -a EPOCHS <<< "${SCALE_EPOCHS:-1 3 6 12 22 24}"
read -r -a WIDE <<< "${SCALE_WIDTHS:-256}"
MINUTES=${SCALE_MINUTES:-40}
T="--threads ${SCALE_THREADS:-2} --no-progress"
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

for part in $PARTS; do
  case $part in
    overhead)
      stamp "trace overhead"
      python scripts/trace_overhead.py --rows 128 --iters 100 --rounds 5 ;;
    replication|budget)
      stamp "$part"
      bench scale --part "$part" --data-root "$DATA" $T ;;
    train-epochs)
      stamp "the cpu flow again, kept after epochs ${EPOCHS[*]}"
      # a finished training is not extended: rerunning the script reuses its checkpoints
      [ -f "$SWEEP" ] && { echo "kept $SWEEP"; continue; }
      bench train --preset cpu --dataset celeba --data-root "$DATA" --checkpoint "$SWEEP" \
        --keep-epochs "$(IFS=,; echo "${EPOCHS[*]}")" $T ;;
    sweep-epochs)
      for e in "${EPOCHS[@]}"; do
        stamp "sweep, epoch $e"
        bench scale --part sweep --data-root "$DATA" \
          --checkpoint "$CK/celeba-cpu-coupling-sweep.epoch$(printf %02d "$e").pt" $T
      done ;;
    train-wide)
      for w in "${WIDE[@]}"; do
        stamp "width $w, $MINUTES minutes"
        # a time-budgeted training stops as a finished one; rerunning the same command would
        # train it further, so an existing checkpoint is kept as it is
        [ -f "$CK/celeba-cpu-coupling-w$w.pt" ] && { echo "kept $CK/celeba-cpu-coupling-w$w.pt"; continue; }
        bench train --preset cpu --dataset celeba --data-root "$DATA" --width "$w" \
          --max-minutes "$MINUTES" $T
      done ;;
    sweep-wide)
      for w in "${WIDE[@]}"; do
        stamp "sweep, width $w"
        bench scale --part sweep --data-root "$DATA" \
          --checkpoint "$CK/celeba-cpu-coupling-w$w.pt" $T
      done ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
stamp done
