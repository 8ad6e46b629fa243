"""A3C end to end under mpiexec: 4 workers run and their checkpoint evaluates, one rank runs serially, a signal stops
them with a complete checkpoint and exit 75 from which `--resume auto` continues on 3 ranks."""

import pytest
from helpers import ac_cmd, check_four_ranks_run_and_evaluate, check_sigterm_then_resume_on_3_ranks, mpirun, run

pytestmark = pytest.mark.mpi


def test_a3c_four_ranks_run_and_evaluate(tmp_path):
    check_four_ranks_run_and_evaluate("a3c", ["actor"] * 4, tmp_path / "a3c")


def test_a3c_one_rank_runs_serially(tmp_path):
    r = run(ac_cmd("a3c", tmp_path / "run", 3000), timeout=180)
    assert r.returncode == 0 and "done: " in r.stdout, r.stdout + r.stderr


def test_a3c_sigterm_checkpoints_then_resume_auto_finishes_on_3_ranks(tmp_path):
    check_sigterm_then_resume_on_3_ranks("a3c", tmp_path / "run", unroll=8 * 5)


def test_a3c_over_several_hosts_is_refused_in_one_line(tmp_path):
    r = mpirun(4, ac_cmd("a3c", tmp_path / "run", 2000), timeout=60, env={"DRLMPI_RANKS_PER_NODE": "2"})
    assert r.returncode == 2 and r.stderr.strip() == (
        "drlmpi: error: a3c keeps its weights in one host's shared memory: run it on one host (this job spans 2)"
    ), r.stderr
