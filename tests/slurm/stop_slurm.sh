#!/bin/bash
# Stop the test SLURM by pid file, never by name.
BASE=${SLURM_TEST_BASE:-/tmp/slurmtest}
for f in "$BASE/run/slurmd.pid" "$BASE/run/slurmctld.pid" /run/munge/munged.pid; do
  [ -s "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null && sleep 1
done
exit 0
