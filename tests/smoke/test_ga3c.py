"""GA3C end to end under mpiexec: a learner, a predictor and 2 model-less actors run and the checkpoint evaluates; a
signal stops them with a complete checkpoint and exit 75 from which `--resume auto` continues on 3 ranks; on pretend
hosts of one rank (every request and unroll a buffer message) with an LSTM core, the predictor writes its rates."""

import json

import pytest
from helpers import (
    DRLMPI,
    ac_cmd,
    check_four_ranks_run_and_evaluate,
    check_sigterm_then_resume_on_3_ranks,
    layout_table,
    mpirun,
    run,
)

from drlmpi import checkpoint

pytestmark = pytest.mark.mpi


def test_ga3c_four_ranks_run_and_evaluate(tmp_path):
    check_four_ranks_run_and_evaluate("ga3c", ["learner", "inference", "actor", "actor"], tmp_path / "ga3c")
    rates = json.loads((tmp_path / "ga3c" / "inference-0.json").read_text())
    assert rates["actors"] == 2 and rates["predictions"] >= 20_000 and rates["unrolls"] > 0, rates
    assert 1 <= rates["mean_batch_requests"] <= 2, rates


def test_ga3c_sigterm_checkpoints_then_resume_auto_finishes_on_3_ranks(tmp_path):
    check_sigterm_then_resume_on_3_ranks("ga3c", tmp_path / "run", unroll=16)


def test_ga3c_with_an_lstm_across_pretend_hosts(tmp_path):
    d = tmp_path / "run"
    r = mpirun(4, ac_cmd("ga3c", d, 20_000, "--set", "lstm=16"), timeout=300, env={"DRLMPI_RANKS_PER_NODE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert len({row[3] for row in layout_table(r.stdout)}) == 4, r.stdout
    st = checkpoint.load(d)
    assert st.env_steps >= 20_000 and st.counters["updates"] > 0
    assert any("core" in k for k in st.weights["online"]), list(st.weights["online"])
    e = run([DRLMPI, "eval", str(d), "--episodes", "2", "--json"], timeout=120)  # the recurrent greedy policy
    assert e.returncode == 0 and json.loads(e.stdout)["episodes"] == 2, e.stderr
