"""QT-Opt end to end under mpiexec on Pendulum-v1: the four roles run, a SIGTERM checkpoints every rank (three
networks, Adam, the replay), `--resume auto` with two bellman ranks trains on, and its replay serves as offline
data; recorded episodes alone (no actors) train their `updates`; a job without actors and offline data is refused
in one line."""

import json

import numpy as np
import pytest
from helpers import DRLMPI, ROOT, layout_table, mpirun, run, sigterm_once_logging

from drlmpi import checkpoint
from drlmpi.signals import REQUEUE_EXIT

pytestmark = pytest.mark.mpi
ENV = {"PYTHONPATH": str(ROOT / "tests" / "envs"), "PYTHONUNBUFFERED": "1"}


def qtopt(d, *extra: str) -> list[str]:
    return [DRLMPI, "--algo", "qtopt", "--env", "Pendulum-v1", "--run-dir", str(d), "--set", "log_every=1",
            "--set", "learning_starts=300", *extra]


def test_qtopt_sigterm_checkpoints_every_role_then_resumes_with_two_bellman_ranks(tmp_path):
    d = tmp_path / "run"
    code, out, err = sigterm_once_logging(4, qtopt(d, "--total-env-steps", "10000000"), d, after=5)
    assert code == REQUEUE_EXIT, out + err
    assert [r[1] for r in layout_table(out)] == ["learner", "replay", "bellman", "actor"], out
    st = checkpoint.load(d)
    assert sorted(st.rng) == ["actor-0", "bellman-0", "learner-0", "replay-0"], st.rng
    assert sorted(st.nets) == ["online", "target1", "target2"] and "adam" in st.optim
    assert st.counters["updates"] > 20 and 0 < st.env_steps < 10_000_000
    t1 = st.nets["target1"]
    assert any(not np.array_equal(st.nets["online"][k], t1[k]) for k in t1), "Q1' is Polyak-averaged, not a copy"
    _, arrays = checkpoint.load_part(st, "replay-0", "replay")
    assert arrays["action"].dtype == np.float32 and arrays["action"].shape[1:] == (1,)
    assert np.abs(arrays["action"]).max() <= 2.0 and len(np.unique(arrays["action"])) > 100

    total = st.env_steps + 1500
    r = mpirun(5, [*qtopt(d, "--total-env-steps", str(total)), "--resume", "auto", "--layout", "bellman=2"],
               timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [row[1] for row in layout_table(r.stdout)].count("bellman") == 2, r.stdout
    end = checkpoint.load(d)
    assert end.env_steps >= total and end.counters["updates"] > st.counters["updates"]
    assert {"bellman-0", "bellman-1"} <= set(end.rng)
    e = run([DRLMPI, "eval", str(d), "--episodes", "2", "--json"], timeout=120)
    assert e.returncode == 0 and -2000 < json.loads(e.stdout)["mean_return"] <= 0, e.stdout + e.stderr

    off = tmp_path / "from-replay"  # the run's replay as offline data for offline Q-learning
    r = mpirun(3, qtopt(off, "--set", f"offline={d}", "--set", "offline_ratio=1", "--set", "updates=20"), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    stored = sum(int(checkpoint.load_part(end, p, "replay")[0]["size"]) for p in end.parts)
    attrs, _ = checkpoint.load_part(checkpoint.load(off), "replay-0", "replay")
    assert attrs["demo_size"] == stored and attrs["size"] == 0


def test_qtopt_learns_from_offline_data_alone_and_refuses_a_job_with_nothing_to_learn_from(tmp_path):
    demos = tmp_path / "pendulum.h5"
    r = run([DRLMPI, "record", "--env", "Pendulum-v1", "--policy", "scripted:pendulum", "--episodes", "3",
             "--epsilon", "0.3", "--out", str(demos)], timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr
    d = tmp_path / "offline"
    args = qtopt(d, "--set", f"offline={demos}", "--set", "offline_ratio=1", "--set", "updates=150")
    r = mpirun(3, args, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    st = checkpoint.load(d)
    assert 150 <= st.counters["updates"] <= 150 + 5 and st.env_steps == 0  # + the batches in flight at the STOP
    attrs, arrays = checkpoint.load_part(st, "replay-0", "replay")
    assert attrs["size"] == 0 and attrs["demo_size"] == 3 * 200 - 1  # every step but the last one's n-step
    assert len(np.unique(arrays["demo_priority"])) > 100, "the offline rows' priorities were never updated"

    r = mpirun(3, qtopt(tmp_path / "none"), timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[-1].startswith("drlmpi: error: qtopt without actor ranks"), r.stderr
