# Sourced by the batch scripts: run drlmpi as one job step, forward pre-emption signals to it, requeue on exit 75.
#   DRLMPI      the drlmpi command (default: drlmpi on PATH, e.g. an activated venv)
#   RUN_DIR     the run directory; the same one on every start of the job, so --resume auto continues it
#   SRUN_MPI    srun's --mpi plugin (default pmi2: what the MPICH wheel speaks; a cluster MPI may want pmix)
REQUEUE_EXIT=75  # drlmpi.signals.REQUEUE_EXIT: stopped with a complete checkpoint, resume me

# Signals: the batch shell's USR1 (`--signal=B:USR1@T` before the time limit, or `scancel --signal=USR1 --batch`) is
# forwarded to the step once. A TERM (scancel, pre-emption, the time limit itself) reaches the step's tasks from
# slurmd directly: the shell only notes it and keeps waiting for the step, so the step gets one signal, never two
# from here, and the shell lives to requeue. (A second signal within 5 s is one request to drlmpi anyway.)
run_drlmpi() {
  local step_pid rc forwarded=0
  echo "start ${SLURM_RESTART_COUNT:-0} of job ${SLURM_JOB_ID}: run dir ${RUN_DIR}"
  trap 'if [ "$forwarded" = 0 ]; then forwarded=1; echo "signal: asking drlmpi to checkpoint"; kill -USR1 "$step_pid" 2>/dev/null; fi' USR1
  trap 'echo "TERM: slurmd asks the step to stop; waiting for its checkpoint"' TERM
  # -K1: a rank that dies ends the whole step at once (no survivors waiting); --resume auto: a fresh start when
  # RUN_DIR has no checkpoint yet
  srun --mpi="${SRUN_MPI:-pmi2}" -K1 "${DRLMPI:-drlmpi}" "$@" --run-dir "$RUN_DIR" --resume auto &
  step_pid=$!
  while :; do  # `wait` returns early when a trapped signal arrives: wait again until the step has ended
    wait "$step_pid"; rc=$?
    kill -0 "$step_pid" 2>/dev/null || break
  done
  if [ "$rc" -eq "$REQUEUE_EXIT" ]; then
    echo "drlmpi stopped with a checkpoint (exit $rc): requeueing job ${SLURM_JOB_ID}"
    if ! scontrol requeue "$SLURM_JOB_ID"; then  # a cancelled job cannot be requeued: it was the user's stop
      echo "job ${SLURM_JOB_ID} was not requeued (cancelled?): its checkpoint is complete; submit it again with" \
           "RUN_DIR=${RUN_DIR} to continue"
    fi
    exit 0
  fi
  exit "$rc"
}
