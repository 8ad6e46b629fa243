"""R2D2 against its limits: replay memory per stored step against one 84x84 frame; the learner against a bare loop.

memory:  a replay shard's storage filled to capacity with real Pong sequences (random actions, the Atari preset:
         80 steps, overlap 40, LSTM 512) built by the actors' SequenceBuilder, and an Ape-X shard (compact frames,
         blocks of one env's 64 transitions as the writers send them) filled with n-step transitions from the same
         env; bytes per stored step from the resident-set growth of this process (anonymous pages actually
         touched) and from the arrays' sizes (the frame pool allocated for POOL_PER_ROW frames a row included),
         against one uint8 84x84 frame (7,056 bytes).
learner: the learner's updates/s in a real `mpiexec -n 3 drlmpi --algo r2d2` job whose shard was filled first
         (learning_starts) and whose replay ratio keeps the actor paused, against a bare torch loop on the same
         sequence batches (real CartPole sequences): the same network, loss (burn-in, rescaled double-Q n-step
         targets, priorities), Adam and clipping. Bracketed as benchmarks/apex.py does (L J L J ... L).

Usage: python benchmarks/r2d2.py [--parts memory,learner] [--capacity 256] [--seconds 10] [--repeats 3]
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import torch
from _timing import machine

sys.path.insert(0, os.path.dirname(__file__))
from apex import bare_loop, bracketed, job, show  # noqa: E402

from drlmpi import value_based as vb  # noqa: E402
from drlmpi.algos import r2d2  # noqa: E402
from drlmpi.config import build  # noqa: E402
from drlmpi.envs import make_vec  # noqa: E402
from drlmpi.replay import NStepBuilder, PrioritizedReplay, SequenceBuilder, transition_fields  # noqa: E402
from drlmpi.replay.frames import ENV_BLOCK, FrameReplay, compact, pool_frames  # noqa: E402

FRAME = 84 * 84


def rss_anon() -> int:
    """Resident anonymous bytes of this process (RssAnon)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon")


def fill(storage: PrioritizedReplay, rows_of) -> None:
    """Add rows from rows_of() until the ring holds `capacity` rows (each slot written once); a frame replay gets
    them as a writer sends them: blocks of one env's ENV_BLOCK rows, compacted."""
    frames = isinstance(storage, FrameReplay)
    while storage.size < storage.capacity:
        rows = rows_of()
        if rows is None:
            continue
        step = ENV_BLOCK if frames else len(rows["action"])
        for lo in range(0, len(rows["action"]), step):
            n = min(step, len(rows["action"]) - lo, storage.capacity - storage.size)
            block = {k: v[lo : lo + n] for k, v in rows.items()}
            storage.add(compact(block, storage.stacks) if frames else block, np.ones(n))
            if storage.size == storage.capacity:
                return


def memory(capacity: int) -> None:
    env = make_vec("ALE/Pong-v5", 4, seed=0)
    rng = np.random.default_rng(0)
    cfg = build(r2d2.Config, env="ALE/Pong-v5")
    obs = [env.reset()]

    def stepper(builder, **extra):
        def rows_of():
            actions = rng.integers(0, env.action_space.n, env.num_envs)
            step = env.step(actions)
            out = builder.push(obs[0], actions, step, **extra)
            obs[0] = step.obs
            return out
        return rows_of

    state = np.zeros((env.num_envs, 2, cfg.lstm), np.float32)
    seq = SequenceBuilder(env.num_envs, cfg.seq_len, cfg.seq_overlap, cfg.burn_in, cfg.gamma,
                          env.observation_space, cfg.lstm)
    for name, fields, per_row, rows_of, cap in (
            ("R2D2 sequence step", seq.fields, cfg.seq_len, stepper(seq, state=state), capacity),
            ("Ape-X transition", transition_fields(env.observation_space), 1,
             stepper(NStepBuilder(env.num_envs, 3, 0.99, batch=vb.FRAME_BATCH, env_major=True)), capacity * 20)):
        before = rss_anon()
        if name.startswith("Ape-X"):  # what an Ape-X shard keeps: compact frames (replay.frames)
            stacks = ("obs", "next_obs")
            storage = FrameReplay(cap, fields, stacks, 0.6, rng, pool_frames(cap, ENV_BLOCK, fields, stacks))
        else:
            storage = PrioritizedReplay(cap, fields, 0.6, rng)
        fill(storage, rows_of)
        grown = rss_anon() - before
        arrays = sum(v.nbytes for v in storage.data.values())
        if isinstance(storage, FrameReplay):
            pool = storage.pool
            arrays += pool.frames.nbytes + pool.count.nbytes + pool.free.nbytes
        steps = cap * per_row
        print(f"  {name:20s} {cap} rows x {per_row} steps: {grown / steps:8.0f} B/step resident "
              f"({grown / steps / FRAME:.2f} frames), arrays {arrays / steps:8.0f} B/step "
              f"({arrays / steps / FRAME:.2f} frames)")
        del storage
    env.close()


def sequence_batches(cfg: r2d2.Config, n_batches: int) -> list:
    """Real CartPole sequences (random actions) in batches of cfg.batch_size, as the sampler gives them."""
    env = make_vec(cfg.env, cfg.num_envs, seed=0)
    rng = np.random.default_rng(0)
    builder = SequenceBuilder(cfg.num_envs, cfg.seq_len, cfg.seq_overlap, cfg.burn_in, cfg.gamma,
                              env.observation_space, cfg.lstm)
    state = rng.normal(size=(cfg.num_envs, 2, cfg.lstm)).astype(np.float32) * 0.1
    obs, rows = env.reset(), []
    while sum(len(r["action"]) for r in rows) < n_batches * cfg.batch_size:
        actions = rng.integers(0, 2, cfg.num_envs)
        step = env.step(actions)
        out = builder.push(obs, actions, step, state)
        if out is not None:
            rows.append(out)
        obs = step.obs
    env.close()
    cat = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    B = cfg.batch_size

    class Batch:
        def __init__(self, i):
            self.data = {k: np.ascontiguousarray(v[i * B:(i + 1) * B]) for k, v in cat.items()}
            self.weights = np.ones(B, np.float32)
    return [Batch(i) for i in range(n_batches)]


def bare_updates_per_s(cfg: r2d2.Config, batches: list, seconds: float) -> float:
    from drlmpi.envs import spaces

    net = r2d2.build_net(cfg, *spaces(cfg.env))
    target = r2d2.build_net(cfg, *spaces(cfg.env)).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-5)
    cpu = torch.device("cpu")
    return bare_loop(lambda n: r2d2.learn(net, target, batches[n % len(batches)], cpu, cfg)[0], net, opt,
                     cfg.max_grad_norm, seconds)


def learner(seconds: float, repeats: int) -> None:
    cfg = build(r2d2.Config, env="CartPole-v1")
    batches = sequence_batches(cfg, 8)
    fill_rows = 1000  # sequences stored before training: 10K env steps
    with tempfile.TemporaryDirectory() as d:
        def run(bare: float) -> float:
            free = vb.throttle(cfg, 1, vb.Rows(None, {}, None, None, cfg.seq_len, cfg.seq_len)).slack
            steps = fill_rows * cfg.seq_len + free + int(bare * seconds / 4)
            rows = job(os.path.join(d, f"learner{len(os.listdir(d))}"), cfg.env, steps,
                       [f"learning_starts={fill_rows}", "replay_ratio=4"], timeout=300 + 4 * seconds, algo="r2d2")
            trained = [float(r["updates_per_s"]) for r in rows if int(r["updates"]) > 0][1:-1]
            return float(np.median(trained))

        result = bracketed(lambda: bare_updates_per_s(cfg, batches, seconds / 2), run, repeats)
    print(f"R2D2 learner vs a bare loop, CartPole-v1, batch {cfg.batch_size} x {cfg.seq_len} steps (burn-in "
          f"{cfg.burn_in}), LSTM {cfg.lstm}, 1 torch thread")
    show("learner", "updates/s", *result)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="memory,learner")
    ap.add_argument("--capacity", type=int, default=256, help="sequences in the R2D2 shard (x20 transitions)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"benchmarks/r2d2.py on {machine()}")
    if "memory" in a.parts:
        print(f"Replay memory per stored step against one 84x84 uint8 frame ({FRAME} B), Pong, full shards")
        memory(a.capacity)
    if "learner" in a.parts:
        learner(a.seconds, a.repeats)


if __name__ == "__main__":
    main()
