"""A2C, A3C and IMPALA end to end under mpiexec: they run to the end, their checkpoints evaluate, a signal stops them
with a complete checkpoint and exit 75, and `--resume auto` continues to total_env_steps from it (onto another rank
count); IMPALA's unrolls also cross pretend hosts as buffer messages, and too old ones are dropped and counted."""

import json
import os
import signal
import subprocess
import time

import pytest
from helpers import DRLMPI, MPIEXEC, layout_table, mpirun, run

from drlmpi import checkpoint
from drlmpi.runtime.signals import REQUEUE_EXIT

pytestmark = pytest.mark.mpi


def cmd(algo: str, run_dir, steps: int, *extra: str) -> list[str]:
    return [DRLMPI, "--algo", algo, "--env", "CartPole-v1", "--total-env-steps", str(steps), "--run-dir",
            str(run_dir), "--set", "log_every=1", *extra]


ROLES = {"a2c": ["actor"] * 4, "a3c": ["actor"] * 4, "impala": ["learner", "actor", "actor", "actor"]}


@pytest.mark.parametrize("algo", ["a2c", "a3c", "impala"])
def test_four_ranks_run_and_evaluate(algo, tmp_path):
    d = tmp_path / algo
    r = mpirun(4, cmd(algo, d, 20_000), timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert [row[1] for row in layout_table(r.stdout)] == ROLES[algo], out
    assert "done: 20" in r.stdout, out
    st = checkpoint.load(d)
    who = sorted(f"{role}-{ROLES[algo][:k].count(role)}" for k, role in enumerate(ROLES[algo]))
    assert st.env_steps >= 20_000 and sorted(st.rng) == who, st.rng
    rows = (d / "metrics.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    assert float(last["entropy"]) > 0 and int(last["updates"]) > 0, last
    e = run([DRLMPI, "eval", str(d), "--episodes", "3", "--json"], timeout=120)
    assert e.returncode == 0 and json.loads(e.stdout)["algo"] == algo, e.stderr


@pytest.mark.parametrize("algo", ["a2c", "a3c"])
def test_one_rank_runs_serially(algo, tmp_path):
    r = run(cmd(algo, tmp_path / "run", 3000), timeout=180)
    assert r.returncode == 0 and "done: " in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("algo", ["a2c", "a3c", "impala"])
def test_sigterm_checkpoints_then_resume_auto_finishes_on_other_ranks(algo, tmp_path):
    d = tmp_path / "run"
    p = subprocess.Popen([MPIEXEC, "-n", "4", *cmd(algo, d, 10_000_000)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                         start_new_session=True)
    t0 = time.monotonic()
    while not (d / "metrics.csv").exists() and time.monotonic() - t0 < 120:
        time.sleep(0.1)
    time.sleep(4)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=90)
    assert p.returncode == REQUEUE_EXIT, out + err
    st = checkpoint.load(d)
    assert 0 < st.env_steps < 10_000_000 and len(st.rng) == 4
    total = st.env_steps + 30_000  # several seconds: metric rows are added to the checkpointed history
    r = mpirun(3, cmd(algo, d, total, "--resume", "auto"), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resuming from {st.path}" in r.stdout
    end = checkpoint.load(d)
    unroll = 8 * (20 if algo == "impala" else 5)  # env steps per worker per unroll
    assert total <= end.env_steps < total + 3 * unroll and end.counters["updates"] > st.counters["updates"]
    assert len(end.metrics["time"]) > len(st.metrics["time"])


def test_impala_unrolls_cross_hosts_and_old_ones_are_dropped(tmp_path):
    """4 pretend hosts of 1 rank: every unroll travels as a buffer message (TRAJECTORY, acknowledged); with
    publications every 2 updates and max_policy_lag=2, unrolls that waited in the queue too long are dropped."""
    d = tmp_path / "run"
    r = mpirun(4, cmd("impala", d, 30_000, "--set", "max_policy_lag=2", "--set", "publish_every=2"), timeout=300,
               env={"DRLMPI_RANKS_PER_NODE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    hosts = [row[3] for row in layout_table(r.stdout)]
    assert len(set(hosts)) == 4, r.stdout
    rows = (d / "metrics.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    assert int(last["dropped_unrolls"]) > 0 and int(last["updates"]) > 0, last
    assert checkpoint.load(d).env_steps >= 30_000


def test_a3c_over_several_hosts_is_refused_in_one_line(tmp_path):
    r = mpirun(4, cmd("a3c", tmp_path / "run", 2000), timeout=60, env={"DRLMPI_RANKS_PER_NODE": "2"})
    assert r.returncode == 2 and r.stderr.strip() == (
        "drlmpi: error: a3c keeps its weights in one host's shared memory: run it on one host (this job spans 2)"
    ), r.stderr
