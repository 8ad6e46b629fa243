#!/usr/bin/env bash
# Pong with IMPALA and Ape-X on a machine with a GPU (one call of the device tool prepares and runs it all):
# each algorithm trains with its Atari preset on every core for SECONDS of wall time (the learner on the GPU:
# device auto), a SIGTERM then ends it with its final checkpoint (exit 75), which is evaluated greedily; drlmpi
# report draws both curves (training and greedy returns against frames and wall time) into OUT/report, and
# OUT/results.jsonl holds each evaluation. Record the figures and the table in BENCHMARKS.md with the device named.
#
# Usage: bash benchmarks/atari_pong.sh [OUT] [SECONDS] [RANKS]     (defaults: runs/pong, 270, nproc)
set -euo pipefail
OUT=${1:-runs/pong}
SECONDS_EACH=${2:-270}
RANKS=${3:-$(nproc)}
BIN=$(dirname "$(command -v drlmpi)")
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU: the learner runs on CPU"
for algo in impala apex; do
  rm -rf "${OUT:?}/$algo"
  set +e
  timeout --signal=TERM --kill-after=90 "$SECONDS_EACH" "$BIN/mpiexec" -n "$RANKS" "$BIN/drlmpi" --algo "$algo" \
    --env ALE/Pong-v5 --total-env-steps 50000000 --run-dir "$OUT/$algo" --set log_every=10 \
    --set eval_every=250000 --set eval_episodes=4
  code=$?
  set -e
  case $code in 0|75|124) ;; *) echo "$algo failed with exit $code" >&2; exit "$code";; esac
  "$BIN/drlmpi" eval "$OUT/$algo" --episodes 5 --json | tee -a "$OUT/results.jsonl"
done
"$BIN/drlmpi" report "$OUT/impala" "$OUT/apex" --out "$OUT/report"
tail -n 2 "$OUT"/*/metrics.csv
