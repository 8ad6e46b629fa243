"""The CLI under mpiexec with a multi-rank algorithm module: layout errors and a failing rank."""

import time
from pathlib import Path

import pytest
from helpers import DRLMPI, layout_table, mpi_segments, mpirun, run

pytestmark = pytest.mark.mpi
ENV = {"PYTHONPATH": str(Path(__file__).parent)}
TOY = ["--algo", "toy_algo_pkg.toy", "--env", "CartPole-v1"]


def test_too_few_ranks_for_the_layout(tmp_path):
    r = mpirun(2, [DRLMPI, *TOY, "--run-dir", str(tmp_path)], timeout=60, env=ENV)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == ["drlmpi: error: toy_algo_pkg.toy needs at least 3 ranks (1 learner, 2+ actor); got 2"], lines
    r = mpirun(3, [DRLMPI, *TOY, "--run-dir", str(tmp_path), "--layout", "learner=2"], timeout=60, env=ENV)
    assert r.returncode == 2 and "needs at least 4 ranks (2 learner, 2+ actor); got 3" in r.stderr, r.stderr


def test_layout_table_printed_once(tmp_path):
    r = mpirun(4, [DRLMPI, *TOY, "--run-dir", str(tmp_path)], timeout=60, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    roles = [row[1] for row in layout_table(r.stdout)]
    assert r.stdout.count("rank  role") == 1 and roles == ["learner", "actor", "actor", "actor"], r.stdout


def test_failing_rank_ends_the_cli_job(tmp_path):
    t0, before = time.monotonic(), mpi_segments()
    r = mpirun(4, [DRLMPI, *TOY, "--run-dir", str(tmp_path), "--set", "fail_rank=3"], timeout=60, env=ENV)
    assert r.returncode != 0 and time.monotonic() - t0 < 15
    assert mpi_segments() <= before, "an aborted job left MPI shared memory in /dev/shm"
    assert "rank 3 (actor) failed:" in r.stderr and "RuntimeError: toy failure on rank 3" in r.stderr, r.stderr


def test_a_bug_in_rank_0s_checks_ends_the_job_with_its_traceback(tmp_path):
    """Rank 0 fails before the start barrier with an exception that is not a user error: the job ends (it hung)."""
    t0 = time.monotonic()
    r = mpirun(3, [DRLMPI, *TOY, "--run-dir", str(tmp_path), "--set", "fail_rank=0", "--set", "fail_at=checks"],
               timeout=60, env=ENV)
    assert r.returncode not in (0, 2) and time.monotonic() - t0 < 15, (r.returncode, r.stderr)
    assert "rank 0 (?) failed:" in r.stderr and "RuntimeError: toy failure in rank 0's checks" in r.stderr, r.stderr


def test_a_start_up_refusal_on_one_rank_or_all_ends_the_job_in_one_line(tmp_path):
    """A UserError raised once the runtime started: on every rank, rank 0 prints it once and all exit 2; on one
    rank only, that rank prints it and ends the job, exit 2 (the others would wait for it forever)."""
    every = mpirun(3, [DRLMPI, *TOY, "--run-dir", str(tmp_path), "--set", "fail_rank=0", "--set",
                       "fail_at=layout-all"], timeout=60, env=ENV)
    assert every.returncode == 2 and every.stderr.strip().splitlines() == [
        "drlmpi: error: toy refuses this layout"], every.stderr
    t0 = time.monotonic()
    one = mpirun(3, [DRLMPI, *TOY, "--run-dir", str(tmp_path), "--set", "fail_rank=2", "--set", "fail_at=layout"],
                 timeout=60, env=ENV)
    assert one.returncode == 2 and time.monotonic() - t0 < 15, (one.returncode, one.stderr)
    assert "drlmpi: error: toy refuses this layout (rank 2 only)" in one.stderr.splitlines()[0], one.stderr
    assert "Traceback" not in one.stderr


def test_algo_module_errors(tmp_path):
    r = run([DRLMPI, "--algo", "no_such_pkg.algo", "--env", "CartPole-v1"], timeout=60, env=ENV, cwd=tmp_path)
    assert r.returncode == 2 and "cannot import module" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run([DRLMPI, "--algo", "toy_algo_pkg.__init__", "--env", "CartPole-v1"], timeout=60, env=ENV, cwd=tmp_path)
    assert r.returncode == 2 and "module lacks Config, LAYOUT, ROLES" in r.stderr, r.stderr
