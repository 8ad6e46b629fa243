"""Two learners with allreduced gradients end with bit-identical weights after many updates (Ape-X, R2D2, IMPALA,
SEED).

Layout: learner=2, the algorithm's other roles, actors on the rest (run with -n 5). argv: algo, run_dir,
allreduce backend. Ape-X learners sample their own batches from the shared replay; IMPALA learners each train
on their own actors' unrolls (actors 0 and 2 feed learner 0, actor 1 learner 1, so learner 1 often has no batch
and the mean is over the other): their gradients differ every update, only the allreduce keeps them equal. SEED
learners (with an LSTM core) serve their own actors the same way.
Both learners must have made the same (large) number of updates.
"""

import sys

from _report import report
from mpi4py import MPI

from drlmpi import algos, config, runtime

SETS = {"apex": ["learning_starts=300", "batch_size=32", "replay_ratio=0.5", "total_env_steps=3000"],
        "r2d2": ["learning_starts=20", "batch_size=4", "replay_ratio=0.5", "total_env_steps=1600", "lstm=16",
                 "seq_len=8", "burn_in=2", "seq_overlap=2"],
        "impala": ["batch_size=1", "n_steps=5", "num_envs=4", "total_env_steps=20000"],
        "seed": ["batch_size=1", "n_steps=5", "num_envs=4", "total_env_steps=20000", "lstm=16", "separate_value=false"]}
world = MPI.COMM_WORLD
algo, run_dir, backend = sys.argv[1:4]
module = algos.get(algo)
cfg = config.build(module.Config, None, [f"allreduce={backend}", "log_every=1", *SETS[algo]], env="CartPole-v1",
                   run_dir=run_dir)
rt = runtime.start(module.LAYOUT.with_overrides({"learner": 2}), algo, cfg.seed, world)
runtime.install_thread_hook()
try:
    summary = algos.run(module, rt, cfg)
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
