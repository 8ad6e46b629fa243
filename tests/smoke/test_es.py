"""Evolution Strategies end to end under mpiexec on CartPole-v1: a SIGTERM checkpoints every worker, `--resume auto`
on 2 workers goes on with the same theta and observation statistics; the bytes sent per generation do not grow
with the policy's size; a single rank runs serially."""

import numpy as np
import pytest
from helpers import DRLMPI, mpirun, run, sigterm_once_logging

from drlmpi import checkpoint
from drlmpi.algos.es import centered_ranks
from drlmpi.signals import REQUEUE_EXIT

pytestmark = pytest.mark.mpi


def es(d, *extra: str) -> list[str]:
    return [DRLMPI, "--algo", "es", "--env", "CartPole-v1", "--run-dir", str(d), "--set", "log_every=0.5", *extra]


def test_centered_ranks_are_evenly_spaced_in_minus_half_to_half():
    r = centered_ranks(np.array([[3.0, -1.0], [10.0, 2.0]]))
    np.testing.assert_allclose(r, [[1 / 6, -0.5], [0.5, -1 / 6]], rtol=0, atol=1e-12)


def test_es_sigterm_checkpoints_every_worker_then_resumes_on_two(tmp_path):
    d = tmp_path / "run"
    code, out, err = sigterm_once_logging(4, es(d, "--total-env-steps", "100000000", "--set", "max_episode_steps=50"),
                                          d, after=3)
    assert code == REQUEUE_EXIT, out + err
    st = checkpoint.load(d)
    assert sorted(st.rng) == ["actor-0", "actor-1", "actor-2", "actor-3"] and st.counters["updates"] > 2
    assert st.counters["obs_count"] > 0 and not np.allclose(st.nets["online"]["obs_std"], 1.0)
    total = st.env_steps + 20_000
    r = mpirun(2, [*es(d, "--total-env-steps", str(total), "--set", "max_episode_steps=50"), "--resume", "auto"],
               timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    end = checkpoint.load(d)
    assert end.env_steps >= total and end.counters["updates"] > st.counters["updates"]
    assert end.counters["obs_count"] > st.counters["obs_count"]


def test_es_bytes_per_generation_do_not_grow_with_the_policy(tmp_path):
    sent = {}
    for hidden in ("8", "256,256"):
        d = tmp_path / hidden.replace(",", "x")
        r = mpirun(2, es(d, "--total-env-steps", "20000", "--set", f"hidden={hidden}"), timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        st = checkpoint.load(d)
        params = sum(v.size for k, v in st.nets["online"].items() if not k.startswith("obs_"))
        sent[params] = set(st.metrics["bytes_per_generation"])
    (small, b1), (large, b2) = sorted(sent.items())
    assert large > 100 * small and b1 == b2 and len(b1) == 1, sent  # 2 workers x (8 x 5 + 9) float64


def test_es_runs_serially_on_one_rank(tmp_path):
    r = run(es(tmp_path / "serial", "--total-env-steps", "5000"), timeout=120)
    assert r.returncode == 0 and "done: " in r.stdout, r.stdout + r.stderr
