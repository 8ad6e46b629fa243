"""Every kind of bad input gives one line on stderr and exit code 2, never a traceback."""

import subprocess
import sys

import pytest
from helpers import DRLMPI, mpirun, run

from drlmpi import cli

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
    (BASE + ["--config", "."], ["config file .: Is a directory"]),
    (BASE + ["--seed", "-1"], ["seed must be >= 0"]),
    (BASE + ["--set", "hidden=[-1]"], ["hidden sizes must be >= 1"]),
    (BASE + ["--set", "checkpoint_every=nan"], ["checkpoint_every must be >= 0"]),
    (BASE + ["--set", "log_every=-1"], ["log_every must be >= 0"]),
    (BASE + ["--set", "keep_checkpoints=0"], ["keep_checkpoints must be >= 1"]),
    (BASE + ["--set", "max_env_restarts=-1"], ["max_env_restarts must be >= 0"]),
    (BASE + ["--set", "buffer_size=10000000000000"], ["a replay of 10,000,000,000,000 rows needs", "GiB"]),
])
def test_bad_input_one_line_exit_2(args, fragments, tmp_path):
    assert_user_error(run([DRLMPI, *args], timeout=60, cwd=tmp_path), *fragments)


@pytest.mark.parametrize("args,fragments", [
    (["--algo", "dqn"], ["--env"]),
    (BASE + ["--total-env-steps", "many"], ["invalid int value"]),
    (["eval", "/nonexistent/ckpt.h5"], ["checkpoint not found"]),
    (["layout", "--algo", "dqn", "-n", "3"], ["dqn runs on exactly 1 rank; got 3"]),
    (["layout", "--algo", "apex", "-n", "5", "--layout", "ps=1"], ["apex has no ps role"]),
    (["layout", "--algo", "impala", "-n", "5", "--layout", "inference=1"], ["impala has no inference role"]),
    (["layout", "--algo", "apex", "-n", "4", "--layout", "learner=0"], ["apex needs at least one learner rank"]),
    (["layout", "--algo", "apex", "-n", "4", "--layout", "replay=0"], ["apex needs at least one replay rank"]),
    (["layout", "--algo", "ga3c", "-n", "4", "--layout", "inference=0"], ["ga3c needs at least one inference"]),
    (["layout", "--algo", "qtopt", "-n", "3"], ["qtopt without actor ranks learns from offline data only"]),
])
def test_bad_input_of_commands_that_start_no_job_one_line_exit_2(args, fragments, capsys):
    """The same promise through cli.main in this process (no job starts, so no process of its own is needed)."""
    code = cli.main(args)
    out, err = capsys.readouterr()
    assert_user_error(subprocess.CompletedProcess(args, code, out, err), *fragments)


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
def test_a_directory_as_config_on_3_ranks_is_one_line_not_a_hang(tmp_path):
    r = mpirun(3, [DRLMPI, "--algo", "apex", "--env", "CartPole-v1", "--config", str(tmp_path)], timeout=30,
               cwd=tmp_path)
    assert_user_error(r, "Is a directory")


@pytest.mark.mpi
def test_a_replay_too_large_for_the_host_is_one_line_on_4_ranks(tmp_path):
    """Found by the shard that would allocate it, once the job runs: one line with its rank, the job ends, exit 2."""
    r = mpirun(4, [DRLMPI, "--algo", "apex", "--env", "CartPole-v1", "--set", "buffer_size=10000000000000"],
               timeout=60, cwd=tmp_path)
    mine = [x for x in r.stderr.splitlines() if x.startswith("drlmpi: error: ")]
    assert r.returncode == 2 and len(mine) == 1 and "needs 819,563.9 GiB" in mine[0] and "(rank 1, replay)" in mine[0]
    assert "Traceback" not in r.stderr


@pytest.mark.mpi
def test_bad_config_under_mpiexec_prints_once(tmp_path):
    r = mpirun(2, [DRLMPI, *BASE, "--set", "nope=1"], timeout=60, cwd=tmp_path)
    assert_user_error(r, "unknown key 'nope'")
