"""The CLI under mpiexec with a multi-rank algorithm module: layout errors and a failing rank."""

import time
from pathlib import Path

import pytest
from helpers import DRLMPI, layout_table, mpirun, run

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
    t0 = time.monotonic()
    r = mpirun(4, [DRLMPI, *TOY, "--run-dir", str(tmp_path), "--set", "fail_rank=3"], timeout=60, env=ENV)
    assert r.returncode != 0 and time.monotonic() - t0 < 15
    assert "rank 3 (actor) failed:" in r.stderr and "RuntimeError: toy failure on rank 3" in r.stderr, r.stderr


def test_algo_module_errors(tmp_path):
    r = run([DRLMPI, "--algo", "no_such_pkg.algo", "--env", "CartPole-v1"], timeout=60, env=ENV, cwd=tmp_path)
    assert r.returncode == 2 and "cannot import module" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run([DRLMPI, "--algo", "toy_algo_pkg.__init__", "--env", "CartPole-v1"], timeout=60, env=ENV, cwd=tmp_path)
    assert r.returncode == 2 and "module lacks Config, LAYOUT, ROLES" in r.stderr, r.stderr
