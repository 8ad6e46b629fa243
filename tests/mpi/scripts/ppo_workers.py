"""PPO's workers stay identical, and DD-PPO's preemption threshold cuts a straggler's rollout short.

Run with -n 3 and PYTHONPATH=tests/envs; argv: run_dir, preempt_fraction, normalize (0/1). The env is
slow:SlowCartPole-v1, whose steps sleep on world rank 1 only (DRLMPI_TEST_SLOW_RANKS, _S). Every worker must end
with the same weights and the same state (the running statistics too, when normalising) after the same updates;
rank 0 prints the rounds in which a worker was preempted (the metrics' `preempted` column), which the test
checks: some with the threshold on, none with it off.
"""

import csv
import sys
from pathlib import Path

from _report import report
from mpi4py import MPI

from drlmpi import algos, config, runtime

world = MPI.COMM_WORLD
run_dir, fraction, normalize = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
module = algos.get("ppo")
sets = ["log_every=0", "n_steps=64", "epochs=2", "minibatches=2", f"preempt_fraction={fraction}",
        f"normalize_obs={normalize}", f"normalize_reward={normalize}", "total_env_steps=3000", "eval_episodes=0"]
cfg = config.build(module.Config, None, sets, env="slow:SlowCartPole-v1", run_dir=run_dir)
rt = runtime.start(module.LAYOUT, "ppo", cfg.seed, world)
runtime.install_thread_hook()
try:
    summary = algos.run(module, rt, cfg)
except BaseException as e:  # noqa: BLE001
    runtime.report_and_abort(e)
failures = []
mine = (summary["updates"], summary["weights_sha256"], summary["state_sha256"])
every = world.allgather(mine)
if len(set(every)) != 1:
    failures.append(f"workers differ: {every}")
if world.rank == 0:
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    preempted = sum(float(r["preempted"]) > 0 for r in rows)
    print(f"ppo workers: {summary['updates']} updates each, state {summary['state_sha256'][:12]}; "
          f"{len(rows)} rows, {preempted} with a preempted worker; env steps {rows[-1]['env_steps']}", flush=True)
report(failures)
