"""Ape-X end to end under mpiexec: runs to the end with 4 ranks (its actors and replay shard torch-free), the
checkpoint evaluates, failures end the job."""

import json

import pytest
from helpers import DRLMPI, layout_table, mpirun, role_pss, run

pytestmark = pytest.mark.mpi


def test_apex_four_ranks_runs_and_evaluates(tmp_path):
    d = tmp_path / "apex"
    r = mpirun(4, [DRLMPI, "--algo", "apex", "--env", "CartPole-v1", "--total-env-steps", "6000", "--run-dir", str(d),
                   "--set", "learning_starts=500", "--set", "log_every=1"], timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert [row[1] for row in layout_table(r.stdout)] == ["learner", "replay", "actor", "actor"], out
    assert "done: 6000 env steps" in r.stdout and "peak memory per rank (MiB): learner " in r.stdout, out
    # the actors act in numpy (acting.MLPQNetwork) and the replay shard holds no network: neither imports torch
    # (torch's import alone is about 130 MiB)
    assert role_pss(r.stdout, "actor") < 100 and role_pss(r.stdout, "replay") < 100, out
    rows = (d / "metrics.csv").read_text().splitlines()
    assert len(rows) >= 2 and int(rows[-1].split(",")[1]) == 6000
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    updates = int(last["updates"])
    assert float(last["actor_fps_min"]) > 0 and float(last["replay_fill"]) > 0 and float(last["sample_rate"]) > 0, last
    assert 0 <= float(last["actor_paused"]) <= 1 and 0 <= float(last["learner_waiting"]) <= 1, last
    # policy lag (learner updates since the acting weights): publication every 10 updates, reads every 50 vector
    # steps of 4 envs, 2 actors, 0.25 updates per step: about 10 + 50 * 4 * 2 * 0.25 = 110 at most, on average half
    lags = sorted(float(dict(zip(rows[0].split(","), r.split(",")))["policy_lag"]) for r in rows[2:])
    assert 0 < lags[len(lags) // 2] < 110, lags
    # the replay-ratio throttle holds both sides within its band around 0.25 (0.05: 0.2375 to 0.2625)
    assert 500 <= updates <= 0.2625 * 6000 + 10, updates
    e = run([DRLMPI, "eval", str(d), "--episodes", "3", "--json"], timeout=120)
    assert e.returncode == 0 and json.loads(e.stdout)["algo"] == "apex", e.stderr


def test_apex_too_few_ranks(tmp_path):
    r = mpirun(2, [DRLMPI, "--algo", "apex", "--env", "CartPole-v1", "--run-dir", str(tmp_path)], timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == (
        "drlmpi: error: apex needs at least 3 ranks (1 learner, 1 replay, 1+ actor); got 2"), r.stderr


def test_apex_on_two_pretend_hosts_places_by_host_and_runs(tmp_path):
    """8 ranks as 2 hosts of 4: one replay shard per host, the learner on host 0; samples from the shard on the
    other host come back as buffer messages of the rows asked for."""
    d = tmp_path / "apex"
    r = mpirun(8, [DRLMPI, "--algo", "apex", "--env", "CartPole-v1", "--total-env-steps", "4000", "--run-dir", str(d),
                   "--set", "learning_starts=500"], timeout=300, env={"DRLMPI_RANKS_PER_NODE": "4"})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    table = layout_table(r.stdout)
    assert [(role, host[-2:]) for _, role, _, host in table if role != "actor"] == [
        ("learner", "#0"), ("replay", "#0"), ("replay", "#1")], out
    assert "done: 4000 env steps" in r.stdout, out


def test_apex_learning_starts_below_one_batch_ends_by_itself(tmp_path):
    """learning_starts=0 with batch_size=256 and 2 actors: actors may always provide the first batch."""
    r = mpirun(4, [DRLMPI, "--algo", "apex", "--env", "CartPole-v1", "--total-env-steps", "3000", "--run-dir",
                   str(tmp_path / "a"), "--set", "learning_starts=0", "--set", "batch_size=256"], timeout=120)
    assert r.returncode == 0 and "done: 3000 env steps" in r.stdout, r.stdout + r.stderr


def test_apex_under_serialized_mpi_threads(tmp_path):
    """Below MPI_THREAD_MULTIPLE: one host runs (no relay threads); several hosts stop with one line, exit 2."""
    env = {"MPI4PY_RC_THREAD_LEVEL": "serialized"}
    args = [DRLMPI, "--algo", "apex", "--env", "CartPole-v1", "--total-env-steps", "2000", "--set",
            "learning_starts=500"]
    r = mpirun(4, [*args, "--run-dir", str(tmp_path / "a")], timeout=120, env=env)
    assert r.returncode == 0 and "done: 2000 env steps" in r.stdout, r.stdout + r.stderr
    r = mpirun(4, [*args, "--run-dir", str(tmp_path / "b")], timeout=120, env={**env, "DRLMPI_RANKS_PER_NODE": "2"})
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "drlmpi: error: MPI provides thread level serialized, but a job over several hosts needs 'multiple' (weights "
        "relay threads): unset MPI4PY_RC_THREAD_LEVEL or use an MPI built with thread support"], r.stdout + r.stderr
