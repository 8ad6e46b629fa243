"""Ape-X end to end under mpiexec: runs to the end with 4 ranks, checkpoint evaluates, failures end the job."""

import json
import re

import pytest
from helpers import DRLMPI, mpirun, run

pytestmark = pytest.mark.mpi


def test_apex_four_ranks_runs_and_evaluates(tmp_path):
    d = tmp_path / "apex"
    r = mpirun(4, [DRLMPI, "--algo", "apex", "--env", "CartPole-v1", "--total-env-steps", "6000", "--run-dir", str(d),
                   "--set", "learning_starts=500", "--set", "log_every=1"], timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    table = [line.split() for line in r.stdout.splitlines() if re.match(r"\s+\d+\s+\w+\s+\S+$", line)]
    assert [row[1] for row in table] == ["learner", "replay", "actor", "actor"], out
    assert "done: 6000 env steps" in r.stdout and "peak memory per rank (MiB): learner " in r.stdout, out
    rows = (d / "metrics.csv").read_text().splitlines()
    assert len(rows) >= 2 and int(rows[-1].split(",")[1]) == 6000
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    updates = int(last["updates"])
    assert float(last["actor_fps_min"]) > 0 and float(last["replay_fill"]) > 0 and float(last["sample_rate"]) > 0, last
    # policy lag (learner updates since the acting weights): publication every 10 updates, reads every 50 vector
    # steps of 4 envs, 2 actors, 0.25 updates per step: about 10 + 50 * 4 * 2 * 0.25 = 110 at most, on average half
    lags = sorted(float(dict(zip(rows[0].split(","), r.split(",")))["policy_lag"]) for r in rows[2:])
    assert 0 < lags[len(lags) // 2] < 110, lags
    assert 500 <= updates <= 0.25 * 6000 + 10, updates  # the replay-ratio throttle holds both sides near 0.25
    e = run([DRLMPI, "eval", str(d), "--episodes", "3", "--json"], timeout=120)
    assert e.returncode == 0 and json.loads(e.stdout)["algo"] == "apex", e.stderr


def test_apex_too_few_ranks(tmp_path):
    r = mpirun(2, [DRLMPI, "--algo", "apex", "--env", "CartPole-v1", "--run-dir", str(tmp_path)], timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == (
        "drlmpi: error: apex needs at least 3 ranks (1 learner, 1 replay, 1+ actor); got 2"), r.stderr
