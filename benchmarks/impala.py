"""IMPALA's frames/s against raw acting by as many processes as it has actors, and A3C against A2C, in one run.

impala: `mpiexec -n N drlmpi --algo impala` (1 learner, N - 1 actors, defaults) for about `seconds`, frames/s from
        metrics.csv (median over rows, first and last left out), against N - 1 processes that step the same envs
        with the same network raw (`mpiexec -n N-1 python benchmarks/impala.py --raw`: the actors' numpy forward,
        sample, env.step into an unroll, nothing sent), measured just before and after the job (this VM drifts);
        ratio = job over the mean of the two. And the same raw acting through the torch network (TorchPolicy, what
        IMPALA's actors ran before drlmpi.acting): numpy's acting over torch's.
a3c/a2c: `mpiexec -n N drlmpi --algo a3c|a2c` with their defaults for about `seconds` each, frames/s as above;
        and A3C on two pretend hosts (DRLMPI_RANKS_PER_NODE = N / 2: a ps and N - 1 workers sending it gradients)
        against A3C on one host (N workers, Hogwild! in the window).

Usage: python benchmarks/impala.py [--ranks 4] [--seconds 20]
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

BIN = os.path.dirname(sys.executable)
HERE = os.path.dirname(os.path.abspath(__file__))


def raw(seconds: float, torch_policy: bool) -> None:
    """One acting process: print its frames/s (rank 0 prints the sum over the ranks)."""
    from mpi4py import MPI

    from drlmpi import acting
    from drlmpi.algos import impala
    from drlmpi.envs import make_vec

    cfg = impala.Config()
    env = make_vec(cfg.env, cfg.num_envs, seed=MPI.COMM_WORLD.rank)
    if torch_policy:
        import torch

        from drlmpi.actor_critic import TorchPolicy, build_net

        torch.set_num_threads(1)
        policy = TorchPolicy(build_net(cfg, env.observation_space, env.action_space).requires_grad_(False))
    else:
        policy = acting.NumpyPolicy(acting.MLPActorCritic.of(cfg, env.observation_space, env.action_space),
                                    np.random.default_rng(MPI.COMM_WORLD.rank))
    policy.load(np.random.default_rng(0).normal(0, 0.1, acting.param_count(cfg, env.observation_space,
                                                                              env.action_space)).astype(np.float32))
    obs, episodes, frames = env.reset(), [], 0
    T, E = cfg.n_steps, cfg.num_envs
    out = {"obs": np.empty((T + 1, *obs.shape), obs.dtype), "action": np.empty((T + 1, E), np.int64),
           "reward": np.empty((T + 1, E), np.float32), "discount": np.empty((T + 1, E), np.float32),
           "logits": np.empty((T + 1, E, env.action_space.n), np.float32)}
    MPI.COMM_WORLD.Barrier()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, obs = acting.unroll(policy, env, obs, cfg, False, episodes, out=out)
        frames += T * E
    total = MPI.COMM_WORLD.reduce(frames / (time.perf_counter() - t0), root=0)
    if MPI.COMM_WORLD.rank == 0:
        print(total)


def raw_fps(n: int, seconds: float, torch_policy: bool = False) -> float:
    r = subprocess.run([os.path.join(BIN, "mpiexec"), "-n", str(n), sys.executable, __file__, "--raw", str(seconds)]
                       + (["--torch"] if torch_policy else []), capture_output=True, text=True, timeout=120 + seconds,
                       env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})  # (as drlmpi sets it in a rank)
    if r.returncode:
        sys.exit(f"raw run failed:\n{r.stdout}\n{r.stderr}")
    return float(r.stdout.split()[-1])


def job_fps(algo: str, n: int, steps: int, run_dir: str, env: dict | None = None) -> float:
    r = subprocess.run([os.path.join(BIN, "mpiexec"), "-n", str(n), os.path.join(BIN, "drlmpi"), "--algo", algo,
                        "--env", "CartPole-v1", "--total-env-steps", str(steps), "--run-dir", run_dir, "--set",
                        "log_every=1"], capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})
    if r.returncode:
        sys.exit(f"{algo} job failed:\n{r.stdout}\n{r.stderr}")
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    return float(np.median([float(x["frames_per_s"]) for x in rows[1:-1]]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--raw", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--torch", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.raw is not None:
        return raw(a.raw, a.torch)
    sys.path.insert(0, HERE)
    from _timing import machine

    n = a.ranks
    with tempfile.TemporaryDirectory() as d:
        before = raw_fps(n - 1, a.seconds / 2)
        impala = job_fps("impala", n, int(before * a.seconds), os.path.join(d, "impala"))
        after = raw_fps(n - 1, a.seconds / 2)
        torch_raw = raw_fps(n - 1, a.seconds / 2, torch_policy=True)
        a3c = job_fps("a3c", n, int(impala * a.seconds), os.path.join(d, "a3c"))
        a2c = job_fps("a2c", n, int(impala * a.seconds), os.path.join(d, "a2c"))
        a3c_ps = job_fps("a3c", n, int(a3c * a.seconds), os.path.join(d, "a3c-ps"),
                         {"DRLMPI_RANKS_PER_NODE": str(max(1, n // 2))})
    print(f"CartPole-v1, {n} ranks, defaults, {machine()}")
    print(f"  impala {impala:8.0f} frames/s   raw acting by {n - 1} processes {before:8.0f} / {after:8.0f} frames/s   "
          f"ratio {impala / ((before + after) / 2):.2f}")
    print(f"  raw acting through the torch network {torch_raw:8.0f} frames/s   numpy's over torch's "
          f"{after / torch_raw:.2f}")
    print(f"  a3c    {a3c:8.0f} frames/s   a2c {a2c:8.0f} frames/s   a3c / a2c {a3c / a2c:.2f}")
    print(f"  a3c on 2 pretend hosts (1 ps, {n - 1} workers) {a3c_ps:8.0f} frames/s   against one host (Hogwild!) "
          f"{a3c_ps / a3c:.2f}")


if __name__ == "__main__":
    main()
