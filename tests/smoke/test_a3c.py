"""A3C end to end under mpiexec: 4 workers run and their checkpoint evaluates, one rank runs serially, a signal stops
them with a complete checkpoint and exit 75 from which `--resume auto` continues on 3 ranks; across pretend hosts a
ps carries the weights, and its checkpoint resumes onto one host."""

import json

import numpy as np
import pytest
from helpers import (
    DRLMPI,
    ac_cmd,
    check_four_ranks_run_and_evaluate,
    check_one_rank_runs_serially,
    check_sigterm_then_resume_on_3_ranks,
    layout_table,
    mpirun,
    run,
)

from drlmpi import checkpoint, lifecycle, param_server
from drlmpi.algos import a3c
from drlmpi.envs import spaces
from drlmpi.nets import flat_params

pytestmark = pytest.mark.mpi


def test_a3c_four_ranks_run_and_evaluate(tmp_path):
    check_four_ranks_run_and_evaluate("a3c", ["actor"] * 4, tmp_path / "a3c")


def test_a3c_one_rank_runs_serially(tmp_path):
    check_one_rank_runs_serially("a3c", tmp_path / "run")


def test_a3c_sigterm_checkpoints_then_resume_auto_finishes_on_3_ranks(tmp_path):
    check_sigterm_then_resume_on_3_ranks("a3c", tmp_path / "run", unroll=2 * 5)


def test_a3c_across_pretend_hosts_through_a_ps_then_resumed_onto_one_host(tmp_path):
    """2 pretend hosts: the layout adds a ps, which applies every worker's gradient (updates = env steps / 40, the
    steps of one unroll of 8 envs) and whose final vector is the checkpoint's network; resumed onto one host, the same
    weights and RMSProp statistic go on in place (Hogwild!), still one update per unroll."""
    d = tmp_path / "run"
    r = mpirun(4, ac_cmd("a3c", d, 20_000, "--set", "num_envs=8"), timeout=300, env={"DRLMPI_RANKS_PER_NODE": "2"})
    assert r.returncode == 0, r.stdout + r.stderr
    table = layout_table(r.stdout)
    assert [row[1] for row in table] == ["ps", "actor", "actor", "actor"] and len({row[3] for row in table}) == 2
    assert "done: 20040 env steps, 501 updates" in r.stdout, r.stdout
    st = checkpoint.load(d)
    assert sorted(st.parts) == ["ps-0"] and st.counters["updates"] == st.env_steps // 40 == 501, st.counters
    net = a3c.build_net(a3c.Config(num_envs=8), *spaces("CartPole-v1"))
    lifecycle.restore_learner(st, {"online": net}, {})
    ps = param_server.restore(st, sum(p.numel() for p in net.parameters()))
    np.testing.assert_array_equal(flat_params(net), ps["w"])
    assert ps["version"] == 501 and ps["opt"]["acc"].min() >= 0 and ps["opt"]["acc"].max() > 0
    r = mpirun(3, ac_cmd("a3c", d, 40_000, "--resume", "auto", "--set", "num_envs=8"), timeout=300)
    assert r.returncode == 0 and f"resuming from {st.path}" in r.stdout, r.stdout + r.stderr
    end = checkpoint.load(d)
    assert not end.parts and "shared_rmsprop" in end.optim
    assert end.counters["updates"] == end.env_steps // 40 and end.env_steps >= 40_000, end.counters
    e = run([DRLMPI, "eval", str(d), "--episodes", "3", "--json"], timeout=120)
    assert e.returncode == 0 and json.loads(e.stdout)["algo"] == "a3c", e.stderr


def test_a3c_over_several_hosts_without_a_ps_is_refused_in_one_line(tmp_path):
    r = mpirun(4, ac_cmd("a3c", tmp_path / "run", 2000, "--layout", "ps=0"), timeout=60,
               env={"DRLMPI_RANKS_PER_NODE": "2"})
    assert r.returncode == 2 and r.stderr.strip() == (
        "drlmpi: error: a3c over 2 hosts needs a ps rank to carry its weights between them (--layout ps=0 leaves none)"
    ), r.stderr
