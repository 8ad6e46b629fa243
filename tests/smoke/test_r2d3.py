"""R2D3 end to end under mpiexec on MountainCar-v0 with recorded demonstrations: batches hold demo rows at the
configured ratio; a SIGTERM checkpoints both replays of 2 shards; `--resume auto` on 1 shard restores every demo
sequence exactly once, with its priority, and trains on."""

import os
import signal
import subprocess
import time

import numpy as np
import pytest
from helpers import DRLMPI, MPIEXEC, ROOT, mpirun, run

from drlmpi import checkpoint
from drlmpi.runtime.signals import REQUEUE_EXIT

pytestmark = pytest.mark.mpi
ENV = {"PYTHONPATH": str(ROOT / "tests" / "envs"), "PYTHONUNBUFFERED": "1"}


def demo_rows(state) -> dict[bytes, float]:
    """Every demo sequence of a checkpoint's replay parts -> its priority."""
    out = {}
    for name in (n for n in state.parts if n.startswith("replay-")):
        _, a = checkpoint.load_part(state, name, "replay")
        keys = sorted(k for k in a if k.startswith("demo_") and k != "demo_priority")
        for i in range(len(a["demo_priority"])):
            out[b"".join(a[k][i].tobytes() for k in keys)] = float(a["demo_priority"][i])
    return out


def test_r2d3_mixes_demos_checkpoints_both_replays_and_reshards_them(tmp_path):
    demos = tmp_path / "mc.h5"
    r = run([DRLMPI, "record", "--env", "MountainCar-v0", "--policy", "scripted:mountain_car", "--episodes", "4",
             "--out", str(demos)], timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr
    d = tmp_path / "run"
    args = [DRLMPI, "--algo", "r2d3", "--env", "MountainCar-v0", "--set", f"demos={demos}", "--set",
            "demo_ratio=0.5", "--set", "learning_starts=40", "--set", "log_every=1", "--run-dir", str(d)]
    p = subprocess.Popen([MPIEXEC, "-n", "5", *args, "--total-env-steps", "10000000", "--layout", "replay=2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV},
                         start_new_session=True)
    t0 = time.monotonic()
    while not (d / "metrics.csv").exists() and time.monotonic() - t0 < 120:
        time.sleep(0.1)
    time.sleep(6)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=90)
    assert p.returncode == REQUEUE_EXIT, out + err
    rows = (d / "metrics.csv").read_text().splitlines()
    head = rows[0].split(",")
    fractions = [float(dict(zip(head, r.split(",")))["demo_fraction"]) for r in rows[1:]]
    updates = int(dict(zip(head, rows[-1].split(",")))["updates"])
    assert updates > 50 and 0.4 < np.mean([f for f in fractions if f > 0]) < 0.6, (updates, fractions)
    st = checkpoint.load(d)
    before = demo_rows(st)
    attrs = [checkpoint.load_part(st, f"replay-{s}", "replay")[0] for s in (0, 1)]
    assert len(before) == sum(a["demo_size"] for a in attrs) > 10
    assert len(set(before.values())) > 1, "demo priorities were never updated"
    r = mpirun(4, [*args, "--total-env-steps", str(st.env_steps + 1000), "--resume", "auto", "--layout", "replay=1"],
               timeout=300, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    end = checkpoint.load(d)
    after = demo_rows(end)
    assert sorted(end.parts) == ["replay-0"] and set(after) == set(before), "demo sequences lost or duplicated"
    assert end.counters["updates"] > st.counters["updates"]
