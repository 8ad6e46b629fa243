"""How drlmpi scales on the machine that runs it: one command, one CSV, one figure, in under 9 minutes.

frames   frames/s of `mpiexec -n F+K drlmpi --algo A --env CartPole-v1` (A's defaults, its F fixed ranks) against
         K actor ranks, K = 1, 2, 4, ... up to the cores left beside the fixed ranks (at least 1), for Ape-X,
         IMPALA, SEED RL and PPO; each job beside its limit, the same envs and network stepped raw (forward and
         action, nothing learnt or sent) by K processes (`--raw`), run just before it. A job runs about
         `--seconds`; its frames/s is the median of its metrics rows (the first and last left out).
learner  Ape-X's actor and learner ranks and QT-Opt's trainer against their limits (benchmarks/apex.py and
         benchmarks/qtopt.py, one bracketed repeat each): the ratios issue 29 asked for on free cores.
allreduce  two learner ranks' gradient allreduce, MPI against gloo (benchmarks/allreduce.py), and NCCL where the
         machine has two GPUs or more (NCCL cannot put two ranks on one GPU).
costs    what the throughput model (benchmarks/scaling_model.py, docs/scaling.md) needs beside the rest, each a bare
         loop on one thread: IMPALA's and SEED's learner updates/s on a random batch of their defaults' shape
         (`actors` holds the frames an update learns from), the central server's forward at 1 and 64 requests'
         observations (`actors`: the observations), a replay shard's inserts of Ape-X's blocks (rows/s), and one
         process's raw acting (IMPALA's network) against its envs (`actors`: 1, 4, 16, 64 envs).
gpu      when torch sees a GPU: a bare learner loop (Ape-X's double-DQN update, batch 512) on it against the CPU.

Output: <out>/scaling.csv (part, algo, ranks, actors, value, unit, limit, ratio) and <out>/scaling.png, and the
table on stdout. Usage: python benchmarks/scaling.py [--out docs/figures/scaling/NAME] [--seconds 5]
                         [--parts frames,learner,allreduce,costs,gpu] [--max-actors N]
"""

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = os.path.dirname(sys.executable)
HERE = Path(__file__).resolve().parent
FIXED = {"apex": 2, "impala": 1, "seed": 1, "ppo": 0}  # each algorithm's ranks besides its actors (its LAYOUT)
COLUMNS = ["part", "algo", "ranks", "actors", "value", "unit", "limit", "ratio"]


def row(part: str, algo: str, ranks: int, actors: int, value: float, unit: str, limit: float = float("nan"),
        ratio: float = float("nan")) -> dict:
    """One CSV row (COLUMNS); a cost with no limit leaves limit and ratio NaN."""
    return dict(zip(COLUMNS, (part, algo, ranks, actors, value, unit, limit, ratio)))


def raw(algo: str, seconds: float) -> None:
    """One acting process of `algo`'s defaults (under mpiexec): rank 0 prints the frames/s summed over the ranks."""
    from mpi4py import MPI

    total = MPI.COMM_WORLD.reduce(acting_fps(algo, 0, seconds, MPI.COMM_WORLD.rank, MPI.COMM_WORLD.Barrier), root=0)
    if MPI.COMM_WORLD.rank == 0:
        print(total)


NUMPY_ACTORS = ("apex", "impala", "appo")  # whose actors act in numpy on CartPole (drlmpi.acting)


def raw_policy(algo: str, cfg, env, seed: int):
    """obs [E, 4] -> actions [E] as `algo`'s actors choose them (in numpy for NUMPY_ACTORS, else with the torch
    network on one thread), with its initial network's weights."""
    import torch

    from drlmpi import acting, algos
    from drlmpi.actor_critic import TorchPolicy
    from drlmpi.nets import ActorCritic, flat_params

    torch.set_num_threads(1)
    net = algos.get(algo).build_net(cfg, env.observation_space, env.action_space).requires_grad_(False)
    if not isinstance(net, ActorCritic):  # (Ape-X's: its actors act in numpy)
        q = acting.MLPQNetwork(int(np.prod(env.observation_space.shape)), int(env.action_space.n), tuple(cfg.hidden),
                               cfg.dueling)
        q.load(flat_params(net))
        return lambda obs: q(obs).argmax(1)
    policy = (acting.NumpyPolicy(acting.MLPActorCritic.of(cfg, env.observation_space, env.action_space),
                                 np.random.default_rng(seed)) if algo in NUMPY_ACTORS else TorchPolicy(net))
    policy.load(flat_params(net))
    return lambda obs: policy.act(obs)[0]


def acting_fps(algo: str, num_envs: int, seconds: float, seed: int = 0, ready=lambda: None) -> float:
    """Frames/s of `algo`'s CartPole envs (num_envs of them; 0: its default) and network stepped raw as its actors
    run it (raw_policy): a forward and an action a step, nothing learnt or sent."""
    from drlmpi.envs import make_vec

    cfg = cartpole_config(algo)
    env = make_vec(cfg.env, num_envs or cfg.num_envs, seed=seed)
    act = raw_policy(algo, cfg, env, seed)
    obs, frames = env.reset(), 0
    ready()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        obs = env.step(act(obs)).obs
        frames += len(obs)
    env.close()
    return frames / (time.perf_counter() - t0)


def run(cmd: list[str], timeout: float, env: dict | None = None) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout


def raw_fps(algo: str, n: int, seconds: float) -> float:
    out = run([os.path.join(BIN, "mpiexec"), "-n", str(n), sys.executable, __file__, "--raw", algo, str(seconds)],
              timeout=120 + seconds, env={"OPENBLAS_NUM_THREADS": "1"})  # (as drlmpi sets it in a rank)
    return float(out.split()[-1])


def job_fps(algo: str, ranks: int, steps: int, run_dir: str) -> float:
    """The median frames/s of a job's metrics rows, the first and last left out."""
    run([os.path.join(BIN, "mpiexec"), "-n", str(ranks), os.path.join(BIN, "drlmpi"), "--algo", algo, "--env",
         "CartPole-v1", "--total-env-steps", str(steps), "--run-dir", run_dir, "--set", "log_every=1", "--set",
         "eval_episodes=0"], timeout=600)
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        fps = [float(r["frames_per_s"]) for r in csv.DictReader(f)]
    return float(np.median(fps[1:-1] if len(fps) > 2 else fps))


def actor_counts(algo: str, cores: int, most: int | None) -> list[int]:
    """1, 2, 4, ... up to the cores beside the algorithm's fixed ranks (at least 1), that last count included."""
    top = max(1, cores - FIXED[algo]) if most is None else most
    counts = [k for k in (2**i for i in range(12)) if k < top]
    return [*counts, top]


def frames_part(seconds: float, most: int | None, rows: list[dict]) -> None:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as d:
        for algo in FIXED:
            for k in actor_counts(algo, cores, most):
                limit = raw_fps(algo, k, seconds / 2)
                ranks = FIXED[algo] + k
                fps = job_fps(algo, ranks, int(limit * seconds), os.path.join(d, f"{algo}-{k}"))
                rows.append({"part": "frames", "algo": algo, "ranks": ranks, "actors": k, "value": fps,
                             "unit": "frames/s", "limit": limit, "ratio": fps / limit})
                print(f"  {algo:6s} {k:3d} actors ({ranks:3d} ranks) {fps:9.0f} frames/s   raw acting by {k} "
                      f"processes {limit:9.0f}   ratio {fps / limit:.2f}", flush=True)


SHOWN = re.compile(r"^\s*(\w+)\s+ratio ([\d.]+) .*in the job ([\d., ]+) ([\w/]+)\s+limit ([\d., ]+)")


def ratio_rows(script: str, args: list[str], algo: str, ranks: int, rows: list[dict]) -> None:
    """Run a benchmark script whose `show` lines read `name ratio R (...) in the job X unit limit L, L`."""
    out = run([sys.executable, str(HERE / script), *args], timeout=600)
    for line in out.splitlines():
        m = SHOWN.match(line)
        if m:
            name, ratio, job, unit, limits = m.groups()
            lim = [float(x) for x in limits.replace(",", " ").split()]
            rows.append({"part": name, "algo": algo, "ranks": ranks, "actors": 1 if name == "actor" else 0,
                         "value": float(job.replace(",", " ").split()[0]), "unit": unit,
                         "limit": float(np.mean(lim)), "ratio": float(ratio)})
            print(f"  {algo:6s} {line.strip()}", flush=True)


def learner_part(seconds: float, rows: list[dict]) -> None:
    common = ["--seconds", str(seconds), "--repeats", "1"]
    ratio_rows("apex.py", [*common, "--parts", "actor,learner"], "apex", 3, rows)
    ratio_rows("qtopt.py", [*common, "--parts", "trainer"], "qtopt", 3, rows)


def allreduce_part(rows: list[dict]) -> None:
    """GradAllreduce with MPI against gloo (ms a call; `actors` holds the gradient's floats, `limit` gloo's time)."""
    out = run([sys.executable, str(HERE / "allreduce.py"), "--calls", "100", "--sizes", "1000,68000,1690000"],
              timeout=600)
    n, times = 0, {}
    for line in out.splitlines():
        if m := re.match(r"^\s*([\d,]+) floats", line):
            n, times = int(m.group(1).replace(",", "")), {}
        elif m := re.match(r"^\s*([\w-]+)\s+([\d.]+) ms", line):
            times[m.group(1)] = float(m.group(2))
            if m.group(1) in ("memcpy", "mpi-blocking"):  # (the copy; the wire alone, no meeting)
                rows.append(row(m.group(1), "numpy" if m.group(1) == "memcpy" else "mpi", 2, n, times[m.group(1)],
                                "ms"))
            if {"grad-mpi", "grad-gloo"} <= times.keys():
                mpi, gloo = times.pop("grad-mpi"), times["grad-gloo"]
                rows.append({"part": "allreduce", "algo": "mpi", "ranks": 2, "actors": n, "value": mpi,
                             "unit": "ms", "limit": gloo, "ratio": gloo / mpi})
        print(f"  {line}", flush=True)
    import torch

    if torch.cuda.device_count() < 2:
        print(f"  nccl: {torch.cuda.device_count()} GPU(s) here; NCCL needs a GPU per rank, so it is not measured")


def cartpole_config(algo: str):
    from drlmpi import algos, config

    return config.build(algos.get(algo).Config, env="CartPole-v1")


def cartpole_net(algo: str):
    """(algo's Config with CartPole's defaults, its network, the number of actions), on one torch thread."""
    import torch

    from drlmpi import algos
    from drlmpi.envs import spaces

    torch.set_num_threads(1)
    cfg = cartpole_config(algo)
    obs_space, act_space = spaces(cfg.env)
    return cfg, algos.get(algo).build_net(cfg, obs_space, act_space), act_space.n


def unroll_updates_per_s(algo: str, seconds: float) -> tuple[float, int]:
    """A bare loop of IMPALA's or SEED's learner update (`learn`, backward, clip, RMSProp) on a random batch of
    unrolls {field: [T + 1, N, ...]} of its defaults' shape: (updates/s, frames learnt per update T * N)."""
    from apex import bare_loop

    from drlmpi import algos
    from drlmpi.actor_critic import learner_parts

    cfg, net, A = cartpole_net(algo)
    T, N, rng = cfg.n_steps, cfg.batch_size * cfg.num_envs, np.random.default_rng(0)
    batch = {"obs": rng.normal(size=(T + 1, N, 4)).astype(np.float32), "action": rng.integers(0, A, (T + 1, N)),
             "logits": rng.normal(size=(T + 1, N, A)).astype(np.float32), "reward": np.ones((T + 1, N), np.float32),
             "discount": np.full((T + 1, N), cfg.gamma, np.float32)}
    learn, opt = algos.get(algo).learn, learner_parts(cfg, net).optims["rmsprop"]
    return bare_loop(lambda n: learn(net, batch, cfg, "cpu").total, net, opt, cfg.max_grad_norm, seconds), T * N


def forwards_per_s(algo: str, obs: int, seconds: float) -> float:
    """The central server's forward (and sampled action) on `obs` observations, per second."""
    import torch

    from drlmpi.ops import policy as pi

    _, net, _ = cartpole_net(algo)
    x, n, t0 = torch.randn(1, obs, 4), 0, time.perf_counter()
    with torch.no_grad():
        while time.perf_counter() - t0 < seconds:
            head, _, _ = net(x)
            pi.sample(head[0], net.log_std).numpy()
            n += 1
    return n / (time.perf_counter() - t0)


def inserts_per_s(seconds: float) -> float:
    """A replay shard's storage: PrioritizedReplay.add of Ape-X's CartPole blocks (block_rows n-step rows), rows/s."""
    from drlmpi.replay import PrioritizedReplay

    cfg = cartpole_config("apex")
    fields = {"obs": ((4,), np.float32), "next_obs": ((4,), np.float32), "action": ((), np.int64),
              "ret": ((), np.float32), "discount": ((), np.float32)}
    rng, rows = np.random.default_rng(0), cfg.block_rows
    block = {k: rng.random((rows, *shape)).astype(dtype) for k, (shape, dtype) in fields.items()}
    store = PrioritizedReplay(cfg.buffer_size, fields, cfg.alpha, rng)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        store.add(block, rng.random(rows) + 0.1)
        n += rows
    return n / (time.perf_counter() - t0)


def costs_part(seconds: float, rows: list[dict]) -> None:
    sys.path.insert(0, str(HERE))

    def add(algo, batch, value, unit):
        rows.append(row("cost", algo, 1, batch, value, unit))
        print(f"  cost {algo:14s} {value:10.1f} {unit} (batch {batch})", flush=True)

    for algo in ("impala", "seed"):
        ups, frames = unroll_updates_per_s(algo, seconds / 2)
        add(algo, frames, ups, "updates/s")
    for obs in (1, 64):
        add("seed-forward", obs, forwards_per_s("seed", obs, seconds / 4), "forwards/s")
    add("apex-insert", 64, inserts_per_s(seconds / 4), "rows/s")
    for envs in (1, 4, 16, 64):
        add("acting", envs, acting_fps("impala", envs, seconds / 8), "frames/s")


def gpu_part(seconds: float, rows: list[dict]) -> None:
    import torch

    if not torch.cuda.is_available():
        print("  gpu: no GPU here")
        return
    sys.path.insert(0, str(HERE))
    from apex import bare_updates_per_s

    cpu = bare_updates_per_s("CartPole-v1", 512, seconds)
    gpu = bare_updates_per_s("CartPole-v1", 512, seconds, device="cuda")
    rows.append({"part": "gpu", "algo": "apex", "ranks": 1, "actors": 0, "value": gpu, "unit": "updates/s",
                 "limit": cpu, "ratio": gpu / cpu})
    print(f"  apex bare learner loop, batch 512: {gpu:.0f} updates/s on {torch.cuda.get_device_name()} against "
          f"{cpu:.0f} on one CPU thread ({gpu / cpu:.2f}x)", flush=True)


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, algo in enumerate(FIXED):
        pts = [r for r in rows if r["part"] == "frames" and r["algo"] == algo]
        if pts:
            k = [r["actors"] for r in pts]
            ax.plot(k, [r["value"] for r in pts], "o-", color=f"C{i}", label=f"{algo} job")
            ax.plot(k, [r["limit"] for r in pts], "x--", color=f"C{i}", alpha=0.6, label=f"{algo} raw acting")
    ks = sorted({r["actors"] for r in rows if r["part"] == "frames"})
    ax.set_xscale("log", base=2)
    ax.set(xlabel="actor ranks", ylabel="env frames/s (CartPole-v1)", yscale="log", xticks=ks, xticklabels=ks,
           title=f"drlmpi scaling on {os.cpu_count()} cores")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "figures" / "scaling" / f"{os.cpu_count()}-cores"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--parts", default="frames,learner,allreduce,costs,gpu")
    ap.add_argument("--max-actors", type=int, default=None, help="the largest actor count (default: the free cores)")
    ap.add_argument("--raw", nargs=2, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.raw is not None:
        return raw(a.raw[0], float(a.raw[1]))
    sys.path.insert(0, str(HERE))
    from _timing import machine

    t0 = time.monotonic()
    rows = [row("machine", "-", 0, 0, os.cpu_count(), "cores")]
    print(f"benchmarks/scaling.py on {machine()}", flush=True)
    parts = {"frames": lambda: frames_part(a.seconds, a.max_actors, rows),
             "learner": lambda: learner_part(a.seconds, rows), "allreduce": lambda: allreduce_part(rows),
             "costs": lambda: costs_part(a.seconds, rows), "gpu": lambda: gpu_part(a.seconds, rows)}
    for name in a.parts.split(","):
        parts[name]()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "scaling.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    figure(rows, out / "scaling.png")
    print(f"{out / 'scaling.csv'} and scaling.png written in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
