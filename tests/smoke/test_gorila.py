"""GORILA end to end under mpiexec: 4 ranks to the end with an evaluable checkpoint; several learners and ps
shards across pretend hosts; every gradient the learners sent is applied."""

import json

import pytest
from helpers import DRLMPI, layout_table, mpirun, role_pss, run

pytestmark = pytest.mark.mpi


def metrics(d) -> tuple[list[str], list[dict]]:
    rows = (d / "metrics.csv").read_text().splitlines()
    head = rows[0].split(",")
    return head, [dict(zip(head, r.split(","))) for r in rows[1:]]


def test_gorila_four_ranks_runs_and_evaluates(tmp_path):
    d = tmp_path / "gorila"
    r = mpirun(4, [DRLMPI, "--algo", "gorila", "--env", "CartPole-v1", "--total-env-steps", "6000",
                   "--run-dir", str(d), "--set", "learning_starts=500", "--set", "log_every=1"], timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "done: 6000 env steps" in r.stdout and "peak memory per rank (MiB): learner " in r.stdout, out
    assert role_pss(r.stdout, "actor") < 100 and role_pss(r.stdout, "replay") < 100, out  # numpy acting, no torch
    _, rows = metrics(d)
    last = rows[-1]
    assert int(last["env_steps"]) == 6000
    ps_updates = int(last["ps_updates"])
    # one learner: the parameter server applied exactly the gradients it sent; the throttle holds 0.25 per step
    assert ps_updates == int(last["updates"]) and 500 <= ps_updates <= 0.2625 * 6000 + 10, last
    assert float(last["actor_fps_min"]) > 0 and float(last["sample_rate"]) > 0, last
    e = run([DRLMPI, "eval", str(d), "--episodes", "3", "--json"], timeout=120)
    assert e.returncode == 0 and json.loads(e.stdout)["algo"] == "gorila", e.stderr


def test_gorila_two_learners_two_ps_shards_on_pretend_hosts(tmp_path):
    d = tmp_path / "gorila"
    r = mpirun(7, [DRLMPI, "--algo", "gorila", "--env", "CartPole-v1", "--total-env-steps", "4000",
                   "--layout", "learner=2,ps=2,replay=1", "--run-dir", str(d), "--set", "learning_starts=500"],
               timeout=300, env={"DRLMPI_RANKS_PER_NODE": "2"})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    roles = [row[1] for row in layout_table(r.stdout)]
    assert roles == ["learner", "learner", "ps", "ps", "replay", "actor", "actor"], out
    assert "done: 4000 env steps" in r.stdout, out
    e = run([DRLMPI, "eval", str(d), "--episodes", "2", "--json"], timeout=120)
    assert e.returncode == 0, e.stderr


def test_gorila_writes_periodic_checkpoints(tmp_path):
    d = tmp_path / "gorila"
    r = mpirun(4, [DRLMPI, "--algo", "gorila", "--env", "CartPole-v1", "--total-env-steps", "8000",
                   "--run-dir", str(d), "--set", "learning_starts=500", "--set", "checkpoint_every=1"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    ckpts = sorted(p.name for p in (d / "checkpoints").glob("ckpt-*.h5"))
    assert len(ckpts) >= 3 and ckpts[-1].startswith("ckpt-000000008000-"), ckpts  # periodic ones, then the final one
    e = run([DRLMPI, "eval", str(d / "checkpoints" / ckpts[0]), "--episodes", "2", "--json"], timeout=120)
    assert e.returncode == 0 and json.loads(e.stdout)["algo"] == "gorila", e.stderr
