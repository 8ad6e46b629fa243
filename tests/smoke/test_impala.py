"""IMPALA end to end under mpiexec: a learner and 3 actors run and the checkpoint evaluates, a signal stops them with
a complete checkpoint and exit 75 from which `--resume auto` continues on 3 ranks, and unrolls cross pretend hosts
as buffer messages, too old ones dropped and counted."""

import pytest
from helpers import (
    ac_cmd,
    check_four_ranks_run_and_evaluate,
    check_sigterm_then_resume_on_3_ranks,
    layout_table,
    mpirun,
)

from drlmpi import checkpoint

pytestmark = pytest.mark.mpi


def test_impala_four_ranks_run_and_evaluate(tmp_path):
    check_four_ranks_run_and_evaluate("impala", ["learner", "actor", "actor", "actor"], tmp_path / "impala",
                                      torch_free=True)


def test_impala_sigterm_checkpoints_then_resume_auto_finishes_on_3_ranks(tmp_path):
    check_sigterm_then_resume_on_3_ranks("impala", tmp_path / "run", unroll=2 * 5)


def test_impala_unrolls_cross_hosts_and_old_ones_are_dropped(tmp_path):
    """4 pretend hosts of 1 rank: every unroll travels as a buffer message (TRAJECTORY, acknowledged); with
    publications every 2 updates and max_policy_lag=2, unrolls that waited in the queue too long are dropped."""
    d = tmp_path / "run"
    r = mpirun(4, ac_cmd("impala", d, 30_000, "--set", "max_policy_lag=2", "--set", "publish_every=2"), timeout=300,
               env={"DRLMPI_RANKS_PER_NODE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    hosts = [row[3] for row in layout_table(r.stdout)]
    assert len(set(hosts)) == 4, r.stdout
    rows = (d / "metrics.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    assert int(last["dropped_unrolls"]) > 0 and int(last["updates"]) > 0, last
    assert checkpoint.load(d).env_steps >= 30_000
