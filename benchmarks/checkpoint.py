"""Checkpoint costs against their physical limits, in one run.

pause:  what training stops for: `lifecycle.snapshot` (networks, target, Adam moments, RNG, metrics copied
        into memory), against a bare memcpy (np.copyto) of the same bytes.
write:  what the writer thread does meanwhile: `checkpoint.save` of that state (HDF5, SHA-256 into the user
        block, fsync, rename, directory fsync), against writing the same bytes to a file raw and fsyncing.
replay: a replay shard's part: the pause (`replay.plane.part_of`: rows copied oldest first, priorities; the
        shard then serves on while a thread writes) against a memcpy of the rows, and the write
        (`checkpoint.save_part`) against the same raw write of its bytes.
Networks: the CartPole MLP (256, 256) and the Atari Nature CNN; replay: 100K CartPole transitions and 20K Atari
ones (84x84x4 uint8 frames, obs and next_obs). Median of `repeats`.

Usage: python benchmarks/checkpoint.py [--repeats 5] [--dir DIR]
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from _timing import machine

from drlmpi import checkpoint, lifecycle
from drlmpi.algos import apex
from drlmpi.envs import spaces
from drlmpi.replay import PrioritizedReplay, transition_fields
from drlmpi.replay.plane import part_of


class Log:  # what lifecycle.snapshot reads of a RunLog: a day of rows every 10 s
    returns = list(range(100))

    def wall_time(self):
        return 0.0

    def history(self):
        return {c: np.zeros(8640) for c in ("time", "env_frames", "recent_return", "frames_per_s", "updates_per_s")}


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def raw_write(path: str, arrays: list[np.ndarray]) -> None:
    with open(path, "wb") as f:
        for a in arrays:
            f.write(memoryview(np.ascontiguousarray(a)).cast("B"))
        f.flush()
        os.fsync(f.fileno())


def measure(env_id: str, repeats: int, d: str) -> None:
    """Print the pause and write costs of env_id's state and replay part (files in d)."""
    cfg = apex.Config(env=env_id, run_dir=d)
    obs_space, act_space = spaces(env_id)
    net = apex.build_net(cfg, obs_space, act_space)
    target = apex.build_net(cfg, obs_space, act_space)
    opt = torch.optim.Adam(net.parameters())
    net(torch.zeros(2, *obs_space.shape)).sum().backward()
    opt.step()
    gen = np.random.default_rng(0)

    def snap():
        return lifecycle.snapshot("apex", cfg, Log(), {"env_steps": 1, "updates": 1},
                                  {"online": net, "target": target}, {"adam": opt}, gen, "learner-0", {})

    st = snap()
    arrays = [*(x for n in st.nets.values() for x in n.values()),
              *(x for s in st.optim["adam"]["state"].values() for x in s.values()), *st.metrics.values()]
    nbytes = sum(x.nbytes for x in arrays)
    dst = [np.empty_like(x) for x in arrays]
    pause = median_time(snap, repeats)
    memcpy = median_time(lambda: [np.copyto(o, x) for o, x in zip(dst, arrays)], repeats)
    path = os.path.join(d, "ckpt-000000000001-000001.h5")
    write = median_time(lambda: checkpoint.save(path, st), repeats)
    raw = median_time(lambda: raw_write(os.path.join(d, "raw"), arrays), repeats)
    print(f"  {env_id:12s} state {nbytes / 2**20:7.1f} MiB  pause {pause * 1e3:7.2f} ms (memcpy "
          f"{memcpy * 1e3:6.2f} ms, {pause / memcpy:5.1f}x)   write {write * 1e3:7.1f} ms (raw write+fsync "
          f"{raw * 1e3:6.1f} ms, {write / raw:4.2f}x)")

    n = 100_000 if env_id == "CartPole-v1" else 20_000
    shard = PrioritizedReplay(n, transition_fields(obs_space), 0.6, gen)
    rows = {k: np.zeros((n, *shape), dt) for k, (shape, dt) in transition_fields(obs_space).items()}
    shard.add(rows, gen.random(n) + 0.1)
    part = os.path.join(d, "replay-0.h5")
    copies = [np.empty_like(v) for v in shard.data.values()]
    t_copy = median_time(lambda: part_of(shard, 0, 1), repeats)
    t_memcpy = median_time(lambda: [np.copyto(o, v) for o, v in zip(copies, shard.data.values())], repeats)
    attrs, rows_copy = part_of(shard, 0, 1)
    t_part = median_time(lambda: checkpoint.save_part(part, "replay", attrs, rows_copy), repeats)
    raw_part = median_time(lambda: raw_write(os.path.join(d, "raw"), [*shard.data.values()]), repeats)
    size = sum(v.nbytes for v in shard.data.values())
    print(f"  {env_id:12s} replay part {n:,} rows {size / 2**20:7.1f} MiB  pause {t_copy * 1e3:7.1f} ms "
          f"(memcpy {t_memcpy * 1e3:6.1f} ms, {t_copy / t_memcpy:4.2f}x)   write {t_part * 1e3:7.1f} ms "
          f"(raw write+fsync {raw_part * 1e3:6.1f} ms, {t_part / raw_part:4.2f}x)")



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where files are written (default: a temporary directory)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"Checkpoint costs, median of {a.repeats}, {machine()}")
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        for env_id in ("CartPole-v1", "ALE/Pong-v5"):
            measure(env_id, a.repeats, d)

if __name__ == "__main__":
    main()
