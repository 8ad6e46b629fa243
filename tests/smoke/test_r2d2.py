"""R2D2 end to end under mpiexec, on the memory task (CartPole without velocities): a SIGTERM checkpoints the
sequence replay (2 shards) and every rank's RNG; `--resume auto` on 1 shard and 2 actors keeps every stored
sequence exactly once, trains on, and the final checkpoint evaluates."""

import json

import numpy as np
import pytest
from helpers import DRLMPI, ROOT, layout_table, mpirun, replay_rows, run, sigterm_once_logging

from drlmpi import checkpoint
from drlmpi.signals import REQUEUE_EXIT

pytestmark = pytest.mark.mpi
ENV = {"PYTHONPATH": str(ROOT / "tests" / "envs"), "PYTHONUNBUFFERED": "1"}
R2D2 = [DRLMPI, "--algo", "r2d2", "--env", "masked_cartpole:CartPoleNoVel-v1", "--set", "learning_starts=50",
        "--set", "log_every=1"]


def test_r2d2_sigterm_checkpoints_sequences_and_resumes_on_another_layout(tmp_path):
    d = tmp_path / "run"
    code, out, err = sigterm_once_logging(5, [*R2D2, "--total-env-steps", "10000000", "--run-dir", str(d),
                                              "--layout", "replay=2"], d, env=ENV)
    assert code == REQUEUE_EXIT, out + err
    assert [row[1] for row in layout_table(out)] == ["learner", "replay", "replay", "actor", "actor"], out
    st = checkpoint.load(d)
    assert st.algo == "r2d2" and st.counters["updates"] > 0 and len(st.rng) == 5, st.counters
    _, part = checkpoint.load_part(st, "replay-0", "replay")
    assert part["obs"].shape[1:] == (21, 2) and part["state"].shape[1:] == (2, 64), part["obs"].shape
    assert set(np.unique(part["burn"])) <= {0, 10} and (part["valid"].sum(1) > part["burn"]).all()
    assert (np.diff(part["valid"], axis=1) <= 0).all()  # valid steps are a prefix: padding only after an end
    before = [row for row, _ in replay_rows(st)]
    assert len(before) > 50 and len(set(before)) == len(before)
    total = st.env_steps + 2000
    r = mpirun(4, [*R2D2, "--total-env-steps", str(total), "--run-dir", str(d), "--resume", "auto", "--layout",
                   "replay=1"], timeout=300,
               env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resuming from {st.path}" in r.stdout
    end = checkpoint.load(d)
    assert end.env_steps >= total and end.counters["updates"] > st.counters["updates"]
    assert sorted(end.parts) == ["replay-0"] and sorted(end.rng) == ["actor-0", "actor-1", "learner-0", "replay-0"]
    after = {row for row, _ in replay_rows(end)}
    assert all(s in after for s in before), "a stored sequence was lost in the re-sharding"
    e = run([DRLMPI, "eval", str(d), "--episodes", "3", "--json", "--env", "masked_cartpole:CartPoleNoVel-v1"],
            timeout=120, env=ENV)
    assert e.returncode == 0 and json.loads(e.stdout)["algo"] == "r2d2", e.stderr
