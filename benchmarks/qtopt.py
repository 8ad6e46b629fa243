"""QT-Opt against its limits: CEM action selection against one forward; bellman ranks' labelling rate for 1 and 2
ranks; the trainer against a bare torch loop.

cem:     seconds per state of CEM (2 x 64 x 6, the defaults) on Pendulum's Q(s, a) for a batch of B states, against
         one forward of Q(s, a) on the same B (state, action) pairs: CEM's floor is `iterations` forwards of
         B x samples pairs, so its ratio to one forward says what the search costs.
bellman: labelled transitions/s of a real `mpiexec -n 3+K drlmpi --algo qtopt --layout bellman=K` job for K = 1 and 2,
         in one run: the trainer's updates/s x batch_size, with the actor almost idle (one step per 10 updates) once
         the replay holds learning_starts transitions: the bellman ranks set the pace; they share the machine's
         cores with the trainer and the shard.
trainer: the trainer's updates/s in such a job whose bellman ranks label faster than it trains (their CEM cut to
         1 x 6 x 6: labelling is then cheap, the trainer's work is unchanged), against a bare torch loop on the same
         labelled batches: the same network, weighted squared error, Adam, clipping and Polyak update. Bracketed as
         benchmarks/apex.py does (L J L J ... L). Also the CPU seconds per update of the trainer rank (from
         /proc, over the middle 60% of its training) against the bare loop's: the work each update costs, whatever
         share of the cores the other ranks leave it.

Usage: python benchmarks/qtopt.py [--parts cem,bellman,trainer] [--seconds 10] [--repeats 3]
"""

import argparse
import copy
import os
import sys
import tempfile

import numpy as np
import torch
from _timing import best_of, machine

sys.path.insert(0, os.path.dirname(__file__))
from apex import bare_loop, bracketed, show  # noqa: E402

from drlmpi.algos import qtopt  # noqa: E402
from drlmpi.config import build  # noqa: E402
from drlmpi.envs import spaces  # noqa: E402

BIN = os.path.dirname(sys.executable)


def cem_part() -> None:
    cfg = build(qtopt.Config)
    obs_space, act_space = spaces(cfg.env)
    net = qtopt.build_net(cfg, obs_space, act_space).requires_grad_(False)
    print(f"CEM action selection ({cfg.cem_iterations} x {cfg.cem_samples} x {cfg.cem_elites}) against one forward "
          f"of Q(s, a), {cfg.env}, MLP {cfg.hidden}, 1 torch thread")
    for b in (4, 128):
        obs = torch.randn(b, *obs_space.shape)
        act = torch.rand(b, *act_space.shape) * 4 - 2
        t_cem = best_of(lambda o=obs: qtopt.greedy(net, o, cfg), repeats=5, number=20 if b > 4 else 200)
        t_fwd = best_of(lambda o=obs, a=act: net(o, a), repeats=5, number=200)
        print(f"  B = {b:3d}: CEM {t_cem / b * 1e6:8.1f} us/state, one forward {t_fwd / b * 1e6:7.2f} us/state, "
              f"ratio {t_cem / t_fwd:.0f} (floor: {cfg.cem_iterations} x {cfg.cem_samples} = "
              f"{cfg.cem_iterations * cfg.cem_samples} forwards of B pairs)")


def rank0_cpu_seconds(pids: dict) -> float | None:
    """CPU seconds (user + system) of the job's rank 0 (the trainer), found once by its PMI_RANK; None if not yet up."""
    if "pid" not in pids:
        for d in os.listdir("/proc"):
            try:
                if d.isdigit() and b"PMI_RANK=0\0" in open(f"/proc/{d}/environ", "rb").read() and \
                        b"drlmpi" in open(f"/proc/{d}/cmdline", "rb").read():
                    pids["pid"] = int(d)
                    break
            except OSError:
                continue
        else:
            return None
    try:
        fields = open(f"/proc/{pids['pid']}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def job(run_dir: str, bellmans: int, seconds: float, rate: float, sets: list[str]) -> tuple[list[dict], float]:
    """(metrics.csv rows, the trainer's CPU seconds per update while training) of `mpiexec -n 3+K drlmpi --algo
    qtopt` (learner, replay, K bellman, one actor) whose actor fills learning_starts and then steps once per RATIO
    updates (almost idle), for about `seconds` of training at `rate` updates/s."""
    import csv
    import subprocess
    import time

    cfg = build(qtopt.Config)
    fill, ratio = 2000, 10
    steps = fill + 100 + int(seconds * rate / ratio)  # 100: about the throttle's slack (held steps)
    cmd = [os.path.join(BIN, "mpiexec"), "-n", str(3 + bellmans), os.path.join(BIN, "drlmpi"), "--algo", "qtopt",
           "--env", cfg.env, "--total-env-steps", str(steps), "--run-dir", run_dir, "--set", "log_every=1",
           "--layout", f"bellman={bellmans}", "--set", f"learning_starts={fill}", "--set", f"replay_ratio={ratio}",
           "--set", "checkpoint_replay=false"]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples, pids = [], {}  # (trainer CPU seconds, updates in the last metrics row)
    metrics = os.path.join(run_dir, "metrics.csv")
    while p.poll() is None:
        time.sleep(0.25)
        cpu = rank0_cpu_seconds(pids)
        if cpu is not None and os.path.exists(metrics):
            lines = open(metrics).read().splitlines()
            last = lines[-1].split(",") if lines else []
            if len(last) > 4 and last[4].isdigit():
                samples.append((cpu, int(last[4])))
    out, err = p.communicate(timeout=300 + 10 * seconds)
    if p.returncode:
        sys.exit(f"job failed:\n{out}\n{err}")
    trained = [(c, u) for c, u in samples if u > 0]
    a, b = trained[len(trained) // 5], trained[-len(trained) // 5]  # the middle 60%: no start-up, no end
    with open(metrics) as f:
        return list(csv.DictReader(f)), (b[0] - a[0]) / max(1, b[1] - a[1])


def steady_rate(rows: list[dict]) -> float:
    """Median updates/s over the rows with updates, less the first and last (start-up, end)."""
    trained = [float(r["updates_per_s"]) for r in rows if int(r["updates"]) > 0][1:-1]
    return float(np.median(trained))


def bellman_part(seconds: float) -> None:
    cfg = build(qtopt.Config)
    print(f"Bellman ranks' labelled transitions/s (batch {cfg.batch_size}, CEM {cfg.cem_iterations} x "
          f"{cfg.cem_samples} x {cfg.cem_elites} on Q1', min(Q1', Q2')), {cfg.env}, actor paused")
    with tempfile.TemporaryDirectory() as d:
        rates = {k: steady_rate(job(os.path.join(d, f"b{k}"), k, seconds, 60 * k, [])[0]) * cfg.batch_size
                 for k in (1, 2)}
    for k, r in rates.items():
        print(f"  bellman={k}: {r:8.0f} labelled transitions/s ({r / rates[1]:.2f} x one rank)")


def labelled_batches(cfg, n: int) -> list[tuple[torch.Tensor, ...]]:
    """n batches (obs, action, target, weight) of real Pendulum transitions from random actions, with targets from
    a random network (the trainer's work does not depend on the values)."""
    from drlmpi.envs import make_vec

    env = make_vec(cfg.env, cfg.batch_size, seed=0)
    rng = np.random.default_rng(0)
    obs, out = env.reset(), []
    for _ in range(n):
        a = rng.uniform(-2, 2, (cfg.batch_size, 1)).astype(np.float32)
        step = env.step(a)
        out.append((torch.as_tensor(obs), torch.as_tensor(a), torch.as_tensor(step.reward * 10),
                    torch.ones(cfg.batch_size)))
        obs = step.obs
    env.close()
    return out


def bare_loop_cpu(cfg, batches, seconds: float) -> tuple[float, float]:
    """(updates/s, CPU seconds per update) of the bare loop: the trainer's limit."""
    obs_space, act_space = spaces(cfg.env)
    net = qtopt.build_net(cfg, obs_space, act_space)
    t1 = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)

    def loss_of(n):
        with torch.no_grad():  # the previous update's Polyak step, as the trainer makes it
            for p1, p in zip(t1.parameters(), net.parameters(), strict=True):
                p1.lerp_(p, cfg.tau)
        obs, act, y, w = batches[n % len(batches)]
        return (w * (net(obs, act) - y) ** 2).mean()

    import time

    c0 = time.process_time()
    rate = bare_loop(loss_of, net, opt, cfg.max_grad_norm, seconds)
    return rate, (time.process_time() - c0) / (rate * seconds)


def trainer_part(seconds: float, repeats: int) -> None:
    cfg = build(qtopt.Config)
    batches = labelled_batches(cfg, 16)
    cheap = ["cem_iterations=1", "cem_samples=6", "cem_elites=6"]
    bare_cpu, job_cpu = [], []
    with tempfile.TemporaryDirectory() as d:
        def limit() -> float:
            rate, cpu = bare_loop_cpu(cfg, batches, seconds / 2)
            bare_cpu.append(cpu)
            return rate

        def run(bare: float) -> float:
            rows, cpu = job(os.path.join(d, f"t{len(os.listdir(d))}"), 1, seconds, bare, cheap)
            job_cpu.append(cpu)
            return steady_rate(rows)

        limits, runs, ratios = bracketed(limit, run, repeats)
    print(f"QT-Opt trainer vs a bare loop, {cfg.env}, batch {cfg.batch_size}, MLP {cfg.hidden}, 1 torch thread "
          f"(bellman CEM cut to 1 x 6 x 6 so that labelling is cheap)")
    show("trainer", "updates/s", limits, runs, ratios)
    work = [((lo + hi) / 2) / c for c, lo, hi in zip(job_cpu, bare_cpu, bare_cpu[1:])]  # the bare loop's over the job's
    show("cpu", "ms/update", [c * 1e3 for c in bare_cpu], [c * 1e3 for c in job_cpu], work)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="cem,bellman,trainer")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"benchmarks/qtopt.py on {machine()}")
    if "cem" in a.parts:
        cem_part()
    if "bellman" in a.parts:
        bellman_part(a.seconds)
    if "trainer" in a.parts:
        trainer_part(a.seconds, a.repeats)


if __name__ == "__main__":
    main()
