"""The run lifecycle end to end: signals stop a job with a complete checkpoint and exit 75; a killed job resumes
from its last checkpoint; a kill during a write leaves the previous one loadable; a resume re-shards replay; every
command that reads checkpoints refuses damaged files with one line and exit 2."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from helpers import DRLMPI, MPIEXEC, mpi_segments, mpirun, replay_rows, run

from drlmpi import checkpoint
from drlmpi.signals import REQUEUE_EXIT

pytestmark = pytest.mark.mpi
APEX = [DRLMPI, "--algo", "apex", "--env", "CartPole-v1", "--set", "learning_starts=500"]


def start(n: int, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([MPIEXEC, "-n", str(n), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)


def wait_for(cond, timeout: float, what: str):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if (x := cond()) is not None:
            return x
        time.sleep(0.05)
    raise TimeoutError(what)


def mains(run_dir) -> list:
    return sorted(p for p in (run_dir / "checkpoints").glob("ckpt-*.h5"))


def kill_job(p: subprocess.Popen) -> None:
    os.killpg(p.pid, signal.SIGKILL)  # mpiexec and every rank: nothing survives to finish a write
    p.communicate(timeout=30)


def rows_of(state) -> list[bytes]:
    """Every stored transition of a checkpoint's replay parts, as bytes."""
    return [row for row, _ in replay_rows(state)]


def test_sigterm_to_mpiexec_checkpoints_and_exits_75(tmp_path):
    d = tmp_path / "run"
    p = start(4, [*APEX, "--total-env-steps", "1000000", "--run-dir", str(d)])
    wait_for(lambda: True if (d / "metrics.csv").exists() else None, 120, "the job to start")
    time.sleep(5)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=90)
    took = time.monotonic() - t0
    assert p.returncode == REQUEUE_EXIT and took < 60, (p.returncode, took, out, err)
    st = checkpoint.load(d)  # complete, checksums and parts verified
    assert 0 < st.env_steps < 1_000_000 and sorted(st.rng) == ["actor-0", "actor-1", "learner-0", "replay-0"]
    assert "replay-0" in st.parts and f"exit {REQUEUE_EXIT}" in out


def test_apex_killed_job_resumes_from_its_last_checkpoint(tmp_path):
    """SIGKILL right after a periodic checkpoint; `--resume auto` continues from its counters with its weights
    (lr=0 on resume: the weights must come out exactly as checkpointed)."""
    d = tmp_path / "run"
    before = mpi_segments()
    p = start(4, [*APEX, "--total-env-steps", "1000000", "--run-dir", str(d), "--set", "checkpoint_every=3"])
    wait_for(lambda: True if mains(d) else None, 180, "a first checkpoint")
    kill_job(p)
    assert mpi_segments() <= before, "a SIGKILLed job left MPI shared memory in /dev/shm"
    st = checkpoint.load(d)
    total = st.env_steps + 2000
    r = mpirun(4, [*APEX, "--total-env-steps", str(total), "--run-dir", str(d), "--resume", "auto",
                   "--set", "lr=0", "--set", "lr_final=0"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resuming from {st.path} ({st.env_steps} env steps, {int(st.counters['updates'])} updates)" in r.stdout
    end = checkpoint.load(d)
    assert end.env_steps == total and end.counters["updates"] > st.counters["updates"]
    for k, v in st.nets["online"].items():
        np.testing.assert_array_equal(end.nets["online"][k], v)
    assert len(end.metrics["time"]) >= len(st.metrics["time"])  # the history goes on from the checkpoint's


def test_apex_kill_during_a_checkpoint_write_leaves_the_previous_one(tmp_path):
    """A large network makes main files of ~70 MB (online, target, Adam's two moments), written for a good part of
    every second; the job is killed while one is being written."""
    d = tmp_path / "run"
    p = start(4, [*APEX, "--total-env-steps", "1000000", "--run-dir", str(d), "--set", "checkpoint_every=1",
                  "--set", "hidden=2048,2048"])
    wait_for(lambda: True if len(mains(d)) >= 1 else None, 180, "a first checkpoint")
    wait_for(lambda: True if list((d / "checkpoints").glob(".ckpt-*.tmp-*")) else None, 120, "a write in progress")
    kill_job(p)
    assert list((d / "checkpoints").glob(".ckpt-*.tmp-*")), "the kill came after the write"
    st = checkpoint.load(d)  # the newest complete one, its parts verified
    assert st.env_steps > 0
    r = run([DRLMPI, "inspect", str(d), "--json"])
    assert r.returncode == 0 and json.loads(r.stdout)["complete"] is True, r.stderr


def test_apex_resume_reshards_replay_and_actors(tmp_path):
    """2 replay shards and 2 actors -> 3 and 3: every checkpointed transition is in the new shards exactly once."""
    d = tmp_path / "run"
    p = start(5, [*APEX, "--total-env-steps", "1000000", "--run-dir", str(d), "--layout", "replay=2"])
    wait_for(lambda: True if (d / "metrics.csv").exists() else None, 120, "the job to start")
    time.sleep(4)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=90)
    assert p.returncode == REQUEUE_EXIT
    st = checkpoint.load(d)
    before = rows_of(st)
    assert len(before) > 500 and len(set(before)) == len(before)
    # three more env steps: each actor acts at most once more, so at most 3 actors x 4 envs x n-step 3 rows come
    r = mpirun(7, [*APEX, "--total-env-steps", str(st.env_steps + 3), "--run-dir", str(d), "--resume", "auto",
                   "--layout", "replay=3"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    end = checkpoint.load(d)
    assert sorted(n for n in end.parts) == ["replay-0", "replay-1", "replay-2"]
    assert sorted(w for w in end.rng if w.startswith("actor")) == ["actor-0", "actor-1", "actor-2"]
    after = rows_of(end)
    counts: dict[bytes, int] = {}
    for row in after:
        counts[row] = counts.get(row, 0) + 1
    assert all(counts.get(row) == 1 for row in before), "a transition was lost or duplicated"
    assert len(after) - len(before) <= 36


def test_resume_refuses_another_shape_or_algorithm(tmp_path):
    d = tmp_path / "run"
    r = run([DRLMPI, "--algo", "dqn", "--env", "CartPole-v1", "--total-env-steps", "600", "--run-dir", str(d),
             "--set", "learning_starts=100"], timeout=120)
    assert r.returncode == 0, r.stderr
    for extra, msg in ((["--algo", "dqn", "--set", "hidden=64"], "cannot resume with hidden"),
                       (["--algo", "apex"], "a checkpoint of dqn, not apex"),
                       (["--algo", "dqn", "--env", "Acrobot-v1"], "cannot resume with env")):
        args = [DRLMPI, "--env", "CartPole-v1", *extra, "--resume", "auto", "--run-dir", str(d),
                "--total-env-steps", "1200"]
        r = run(args, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr, r.stderr
    r = run([DRLMPI, "--algo", "dqn", "--env", "CartPole-v1", "--resume", "auto", "--run-dir", str(d)], timeout=120)
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stdout + r.stderr


def test_corrupted_checkpoints_are_refused_by_every_reader(tmp_path):
    """200 random ways of flipping, zeroing or truncating bytes of real checkpoints (main files and part files):
    eval, inspect and --resume each answer with one line and exit 2; a few under the real CLI, all in-process."""
    import contextlib
    import io

    from drlmpi import cli

    d = tmp_path / "run"
    r = run([DRLMPI, "--algo", "dqn", "--env", "CartPole-v1", "--total-env-steps", "600", "--run-dir", str(d),
             "--set", "learning_starts=100", "--set", "checkpoint_every=0"], timeout=120)
    assert r.returncode == 0, r.stderr
    src = checkpoint.load(d)
    files = [src.path, src.part_path("replay-0")]
    original = {f: f.read_bytes() for f in files}
    rng = np.random.default_rng(0)
    readers = [["eval", str(src.path), "--episodes", "1"], ["inspect", str(src.path)],
               ["train", "--algo", "dqn", "--env", "CartPole-v1", "--resume", str(src.path), "--total-env-steps",
                "100000"]]
    for case in range(200):
        f = files[case % 2]
        data = bytearray(original[f])
        how = ("flip", "zero", "truncate")[rng.integers(3)]
        at = int(rng.integers(0, len(data)))
        if how == "flip":
            data[at] ^= int(rng.integers(1, 256))
        elif how == "zero" and any(data[at : at + (n := int(rng.integers(1, 4096)))]):
            data[at : at + n] = bytes(len(data[at : at + n]))
        elif how == "zero":  # zeros on zeros would change nothing
            data[at] ^= 0xFF
        else:
            del data[at:]
        f.write_bytes(bytes(data))
        for argv in readers if case >= 6 else []:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = cli.main(argv) if argv[0] != "train" else _resume_check(cli, argv)
            assert code == 2 and len(err.getvalue().strip().splitlines()) == 1, (case, how, at, argv, err.getvalue())
        if case < 6:  # the real commands, in their own processes
            argv = readers[case % 3]
            res = run([DRLMPI, *argv], timeout=120)
            assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, (case, how, argv, res.stderr)
            assert res.stderr.startswith("drlmpi: error: "), res.stderr
        f.write_bytes(original[f])


def _resume_check(cli, argv) -> int:
    """What `--resume` reads before any MPI work (rank 0's checks), as the CLI reports it."""
    from drlmpi.errors import UserError

    try:
        cli.prepare_train(cli.parse(argv))
    except UserError as e:
        print(f"drlmpi: error: {e}", file=__import__("sys").stderr)
        return 2
    return 0


def test_a_killed_rank_ends_the_job_within_5_s(tmp_path):
    """SIGKILL to one actor rank: mpiexec tears the whole job down, no rank is left waiting."""
    d = tmp_path / "run"
    p = start(4, [*APEX, "--total-env-steps", "1000000", "--run-dir", str(d)])
    wait_for(lambda: True if (d / "metrics.csv").exists() else None, 120, "the job to start")
    ranks = [r for r in subprocess.run(["pgrep", "-f", str(d)], capture_output=True, text=True).stdout.split()
             if int(r) != p.pid]  # the ranks: their command lines name this run dir
    assert len(ranks) == 4, ranks
    t0 = time.monotonic()
    os.kill(int(sorted(ranks, key=int)[-1]), signal.SIGKILL)
    p.communicate(timeout=60)
    took = time.monotonic() - t0
    assert p.returncode != 0 and took < 5, (p.returncode, took)
    left = subprocess.run(["pgrep", "-f", str(d)], capture_output=True, text=True).stdout.split()
    assert not left, f"survivors: {left}"


DQN = [DRLMPI, "--algo", "dqn", "--env", "CartPole-v1", "--set", "learning_starts=200"]


def test_a_second_job_on_a_run_dir_is_refused_until_the_first_dies(tmp_path):
    """The run directory's lock: a second job is refused in one line naming the holder; a SIGKILL frees it."""
    d = tmp_path / "run"
    first = subprocess.Popen([*DQN, "--total-env-steps", "10000000", "--run-dir", str(d), "--set",
                              "checkpoint_every=1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    wait_for(lambda: True if mains(d) else None, 120, "a first checkpoint")
    second = run([*DQN, "--total-env-steps", "10000000", "--run-dir", str(d), "--resume", "auto"], timeout=60)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert f"run directory {d} is in use by another job (pid {first.pid} on " in lines[0], lines
    kill_job(first)
    st = checkpoint.load(d)
    third = run([*DQN, "--total-env-steps", str(st.env_steps + 500), "--run-dir", str(d), "--resume", "auto"],
                timeout=120)
    assert third.returncode == 0 and f"resuming from {st.path}" in third.stdout, third.stdout + third.stderr


def test_a_resume_from_an_older_checkpoint_writes_a_branch_beside_the_newer_files(tmp_path):
    """Ids continue above every file in the directory: the newer checkpoints stay byte for byte, the branch's files
    get new ids, and `--resume auto` continues the branch (written last), not the file with the most env steps."""
    d = tmp_path / "run"
    r = run([*DQN, "--total-env-steps", "800", "--run-dir", str(d), "--set", "checkpoint_every=0.2", "--set",
             "keep_checkpoints=1000", "--set", "checkpoint_replay=false"], timeout=120)
    assert r.returncode == 0, r.stderr
    before = {p.name: p.read_bytes() for p in mains(d)}
    old = checkpoint.load(min(mains(d), key=lambda p: checkpoint.id_of(p)))
    assert len(before) >= 3 and old.env_steps + 100 < 800, [checkpoint.load(p).env_steps for p in mains(d)]
    r = run([*DQN, "--total-env-steps", str(old.env_steps + 100), "--run-dir", str(d), "--resume", str(old.path),
             "--set", "keep_checkpoints=1"], timeout=120)
    assert r.returncode == 0, r.stderr
    after = {p.name: p for p in mains(d)}
    assert all(after[n].read_bytes() == b for n, b in before.items() if n != old.path.name), "a newer file changed"
    branch = checkpoint.load(d)
    assert branch.id > max(checkpoint.id_of(d / "checkpoints" / n) for n in before)
    assert branch.env_steps == old.env_steps + 100 < max(checkpoint.load(p).env_steps for p in after.values())
    r = run([*DQN, "--total-env-steps", str(branch.env_steps + 100), "--run-dir", str(d), "--resume", "auto"],
            timeout=120)
    assert r.returncode == 0 and f"resuming from {branch.path}" in r.stdout, r.stdout + r.stderr


def test_a_full_disk_ends_the_job_in_one_line_naming_the_file(tmp_path):
    """Writes past RLIMIT_FSIZE fail as on a full disk (16 MiB: MPI's own files fit, not the final checkpoint of a
    network of 2.3M parameters with its target and Adam's moments, 36 MB); the job ends with one line naming the file
    and exit 2, no traceback, no crash."""
    import resource

    d = tmp_path / "run"
    limit = 16 << 20
    r = subprocess.run([*DQN, "--total-env-steps", "400", "--run-dir", str(d), "--set", "hidden=[1500,1500]"],
                       capture_output=True, text=True, timeout=120,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    mine = [x for x in r.stderr.splitlines() if x.startswith("drlmpi: error: ")]
    assert r.returncode == 2 and len(mine) == 1 and "cannot write " + str(d / "checkpoints") in mine[0], r.stderr
    assert "Traceback" not in r.stderr
