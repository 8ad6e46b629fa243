"""R2D3 end to end under mpiexec on MountainCar-v0 with recorded demonstrations: batches hold demo rows at the
configured ratio; a SIGTERM checkpoints both replays of 2 shards; `--resume auto` on 1 shard restores every demo
sequence exactly once, with its priority, and trains on."""

import numpy as np
import pytest
from helpers import DRLMPI, ROOT, mpirun, replay_rows, run, sigterm_once_logging

from drlmpi import checkpoint
from drlmpi.signals import REQUEUE_EXIT

pytestmark = pytest.mark.mpi
ENV = {"PYTHONPATH": str(ROOT / "tests" / "envs"), "PYTHONUNBUFFERED": "1"}


def test_r2d3_mixes_demos_checkpoints_both_replays_and_reshards_them(tmp_path):
    demos = tmp_path / "mc.h5"
    r = run([DRLMPI, "record", "--env", "MountainCar-v0", "--policy", "scripted:mountain_car", "--episodes", "4",
             "--out", str(demos)], timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr
    d = tmp_path / "run"
    args = [DRLMPI, "--algo", "r2d3", "--env", "MountainCar-v0", "--set", f"demos={demos}", "--set",
            "demo_ratio=0.5", "--set", "learning_starts=40", "--set", "log_every=1", "--run-dir", str(d)]
    code, out, err = sigterm_once_logging(5, [*args, "--total-env-steps", "10000000", "--layout", "replay=2"], d,
                                          after=6, env=ENV)
    assert code == REQUEUE_EXIT, out + err
    rows = (d / "metrics.csv").read_text().splitlines()
    head = rows[0].split(",")
    fractions = [float(dict(zip(head, r.split(",")))["demo_fraction"]) for r in rows[1:]]
    updates = int(dict(zip(head, rows[-1].split(",")))["updates"])
    assert updates > 50 and 0.4 < np.mean([f for f in fractions if f > 0]) < 0.6, (updates, fractions)
    st = checkpoint.load(d)
    before = dict(replay_rows(st, "demo_"))
    attrs = [checkpoint.load_part(st, f"replay-{s}", "replay")[0] for s in (0, 1)]
    assert len(before) == sum(a["demo_size"] for a in attrs) > 10
    assert len(set(before.values())) > 1, "demo priorities were never updated"
    r = mpirun(4, [*args, "--total-env-steps", str(st.env_steps + 1000), "--resume", "auto", "--layout", "replay=1"],
               timeout=300, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    end = checkpoint.load(d)
    after = dict(replay_rows(end, "demo_"))
    assert sorted(end.parts) == ["replay-0"] and set(after) == set(before), "demo sequences lost or duplicated"
    assert end.counters["updates"] > st.counters["updates"]
