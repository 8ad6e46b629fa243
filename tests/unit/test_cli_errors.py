"""Every kind of bad input gives one line on stderr and exit code 2, never a traceback."""

import sys

import pytest
from helpers import DRLMPI, mpirun, run

BASE = ["--algo", "dqn", "--env", "CartPole-v1", "--total-env-steps", "100"]


def assert_user_error(r, *fragments):
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("drlmpi: error: "), lines
    assert "Traceback" not in r.stderr + r.stdout
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.mark.parametrize("args,fragments", [
    (["--algo", "nosuch", "--env", "CartPole-v1"], ["unknown algorithm 'nosuch'"]),
    (["--algo", "dqn", "--env", "NoSuchEnv-v0"], ["--env NoSuchEnv-v0", "unknown environment"]),
    (["--algo", "dqn", "--env", "ALE/NoSuchGame-v5"], ["unknown environment"]),
    (["--algo", "dqn", "--env", "nosuchmodule:Env-v0"], ["cannot import module 'nosuchmodule'"]),
    (BASE + ["--set", "no_such_key=1"], ["unknown key 'no_such_key'"]),
    (BASE + ["--set", "lr=fast"], ["bad value for lr"]),
    (BASE + ["--set", "batch_size=1.5"], ["bad value for batch_size"]),
    (BASE + ["--set", "gamma=2"], ["gamma must be in (0, 1]"]),
    (BASE + ["--set", "lr"], ["--set expects key=value"]),
    (BASE + ["--config", "/nonexistent.toml"], ["config file not found"]),
    (BASE + ["--layout", "learner=2"], ["runs on a single rank"]),
    (["--algo", "dqn"], ["--env"]),
    (BASE + ["--total-env-steps", "many"], ["invalid int value"]),
    (["eval", "/nonexistent/ckpt.h5"], ["checkpoint not found"]),
    (["layout", "--algo", "dqn", "-n", "3"], ["dqn runs on exactly 1 rank; got 3"]),
    (["layout", "--algo", "apex", "-n", "5", "--layout", "ps=1"], ["apex has no ps role"]),
    (["layout", "--algo", "impala", "-n", "5", "--layout", "inference=1"], ["impala has no inference role"]),
])
def test_bad_input_one_line_exit_2(args, fragments, tmp_path):
    assert_user_error(run([DRLMPI, *args], timeout=60, cwd=tmp_path), *fragments)


def test_bad_toml_file(tmp_path):
    bad = tmp_path / "run.toml"
    bad.write_text("lr = = 3\n")
    assert_user_error(run([DRLMPI, *BASE, "--config", str(bad)], timeout=60, cwd=tmp_path), "run.toml")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("learning_rate = 0.1\n")
    assert_user_error(run([DRLMPI, *BASE, "--config", str(unknown)], timeout=60, cwd=tmp_path),
                      "unknown key 'learning_rate'")


def test_python_dash_m_entry_point(tmp_path):
    r = run([sys.executable, "-m", "drlmpi", "--algo", "nosuch", "--env", "CartPole-v1"], timeout=60, cwd=tmp_path)
    assert_user_error(r, "unknown algorithm")


@pytest.mark.mpi
def test_single_process_algorithm_on_several_ranks(tmp_path):
    r = mpirun(3, [DRLMPI, *BASE], timeout=60, cwd=tmp_path)
    assert_user_error(r, "dqn runs on exactly 1 rank; got 3")


@pytest.mark.mpi
def test_bad_config_under_mpiexec_prints_once(tmp_path):
    r = mpirun(2, [DRLMPI, *BASE, "--set", "nope=1"], timeout=60, cwd=tmp_path)
    assert_user_error(r, "unknown key 'nope'")
