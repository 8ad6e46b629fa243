"""GA3C end to end under mpiexec: a signal stops a learner, a predictor and 2 model-less actors with a complete
checkpoint and exit 75, from which `--resume auto` continues on 3 ranks; two predictors on two pretend hosts with an
LSTM core serve the actors of their hosts, every rank's RNG is checkpointed and the recurrent policy evaluates."""

import json

import pytest
from helpers import (
    DRLMPI,
    ac_cmd,
    check_sigterm_then_resume_on_3_ranks,
    layout_table,
    mpirun,
    role_pss,
    run,
)

from drlmpi import checkpoint

pytestmark = pytest.mark.mpi


def test_ga3c_sigterm_checkpoints_then_resume_auto_finishes_on_3_ranks(tmp_path):
    check_sigterm_then_resume_on_3_ranks("ga3c", tmp_path / "run", unroll=16)


def test_ga3c_two_predictors_with_an_lstm_on_two_pretend_hosts_and_torch_free_actors(tmp_path):
    """2 pretend hosts of 3 ranks, a predictor on each: every actor is served on its own host (node segments), the
    second host's predictor sends its unrolls to the learner as buffer messages; the recurrent policy evaluates.
    The actors hold no model and import no torch (under 100 MiB PSS; torch's import alone is about 130)."""
    d = tmp_path / "run"
    r = mpirun(6, ac_cmd("ga3c", d, 20_000, "--set", "lstm=16", "--layout", "inference=2"), timeout=300,
               env={"DRLMPI_RANKS_PER_NODE": "3"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert role_pss(r.stdout, "actor") < 100, r.stdout
    rows = layout_table(r.stdout)
    hosts = {role_host for role_host in ((row[1], row[3]) for row in rows) if role_host[0] == "inference"}
    assert len(hosts) == 2 and len({row[3] for row in rows}) == 2, r.stdout
    for i, served in enumerate((1, 2)):  # each predictor served the actors of its host
        rates = json.loads((d / f"inference-{i}.json").read_text())
        assert rates["actors"] == served and rates["unrolls"] > 0 and rates["predictions"] > 0, rates
        assert 1 <= rates["mean_batch_requests"] <= served, rates
    st = checkpoint.load(d)
    assert st.env_steps >= 20_000 and st.counters["updates"] > 0
    assert sorted(st.rng) == ["actor-0", "actor-1", "actor-2", "inference-0", "inference-1", "learner-0"], st.rng
    assert float(st.metrics["entropy"][-1]) > 0
    assert any("core" in k for k in st.weights["online"]), list(st.weights["online"])
    e = run([DRLMPI, "eval", str(d), "--episodes", "2", "--json"], timeout=120)  # the recurrent greedy policy
    assert e.returncode == 0 and json.loads(e.stdout)["episodes"] == 2, e.stderr
