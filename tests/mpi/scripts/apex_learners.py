"""Two Ape-X learners with allreduced gradients end with bit-identical weights after many updates.

Layout: learner=2, replay=1, actors on the rest (run with -n 5). argv: run_dir, allreduce backend.
Each learner samples its own batches from the shared replay, so their gradients differ every update;
only the allreduce keeps them equal. Both learners must have made the same (large) number of updates.
"""

import sys

from _report import report
from mpi4py import MPI

from drlmpi import config, runtime
from drlmpi.algos import apex

world = MPI.COMM_WORLD
run_dir, backend = sys.argv[1], sys.argv[2]
cfg = config.build(apex.Config, None, [f"allreduce={backend}", "learning_starts=300", "batch_size=32",
                                       "replay_ratio=0.5", "log_every=1"],
                   env="CartPole-v1", total_env_steps=3000, run_dir=run_dir)
rt = runtime.start(apex.ROLES.with_overrides({"learner": 2}), "apex", cfg.seed, world)
runtime.install_thread_hook()
try:
    summary = apex.run(rt, cfg)
except BaseException as e:  # noqa: BLE001
    runtime.report_and_abort(e)
failures = []
if rt.role == "learner":
    mine = (summary["updates"], summary["weights_sha256"])
    both = rt.role_comm.allgather(mine)
    if both[0] != both[1]:
        failures.append(f"learners differ: {both}")
    if summary["updates"] < 500:
        failures.append(f"only {summary['updates']} updates")
    if rt.role_comm.rank == 0:
        print(f"learners: {summary['updates']} updates each, weights {summary['weights_sha256'][:12]}", flush=True)
report(failures)
