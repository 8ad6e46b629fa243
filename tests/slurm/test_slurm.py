"""A real single-node SLURM (installed from Debian if missing, started here, stopped by pid file): slurm/apex.sbatch
is submitted, signalled like a pre-emption (`scancel --signal=USR1 --batch`), checkpoints, requeues itself,
resumes with --resume auto and finishes."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drlmpi import checkpoint

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.mpi, pytest.mark.timeout(900)]


def sh(*cmd: str, timeout: float = 60) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout


def job_state(job: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"JobState=(\S+)", out)
    return m[1] if m else "GONE"


def wait_until(cond, timeout: float, what: str, log: Path | None = None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if (x := cond()) is not None:
            return x
        time.sleep(0.5)
    raise TimeoutError(f"{what}; job output:\n{log.read_text() if log and log.exists() else '(none)'}")


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0:
        pytest.skip("the SLURM test starts daemons as root (it runs as root in CI)")
    subprocess.run(["bash", str(HERE / "start_slurm.sh")], check=True, timeout=600)
    yield
    subprocess.run(["bash", str(HERE / "stop_slurm.sh")], timeout=60)


def test_sbatch_signal_requeue_resume_finish(slurm, tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "job.out"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RUN_DIR": str(run_dir),
           "DRLMPI": str(BIN / "drlmpi"), "PYTHONUNBUFFERED": "1"}
    steps = 30_000
    sub = subprocess.run(["sbatch", "--parsable", "--ntasks=4", "--time=10", f"--output={out}",
                          str(ROOT / "slurm" / "apex.sbatch"), "CartPole-v1", str(steps)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=True)
    job = sub.stdout.strip().split(";")[0]
    t0 = time.monotonic()
    try:
        wait_until(lambda: True if (run_dir / "metrics.csv").exists() else None, 240, "the job to train", out)
        time.sleep(3)
        sh("scancel", "--signal=USR1", "--batch", job)
        # the step checkpoints and exits 75, the script requeues the job: it waits for its begin time
        wait_until(lambda: True if "requeueing job" in out.read_text() else None, 120, "the requeue", out)
        first = checkpoint.load(run_dir)
        assert 0 < first.env_steps < steps
        wait_until(lambda: True if job_state(job) in ("PENDING", "REQUEUED") else None, 60, "the job to wait", out)
        # a requeued job may start ~120 s later; it can be started at once only after its old steps are gone
        # (slurmd refuses to launch a job whose credential it just revoked)
        wait_until(lambda: None if subprocess.run(["pgrep", "-x", "slurmstepd"], capture_output=True).stdout
                   else True, 60, "the old job steps to end", out)
        time.sleep(2)
        sh("scontrol", "update", f"JobId={job}", "StartTime=now")
        wait_until(lambda: True if job_state(job) in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "GONE")
                   else None, 600, "the resumed job to end", out)
    finally:
        subprocess.run(["scancel", job], timeout=30)
    text = out.read_text()
    assert job_state(job) in ("COMPLETED", "GONE"), text
    assert "start 1 of job" in text and f"resuming from {first.path}" in text, text
    end = checkpoint.load(run_dir)
    # each of the 2 actors resumes at its half of the checkpoint's steps and steps its env vector whole: it may pass
    # its share of the total by less than num_envs (4)
    assert f"done: {end.env_steps} env steps" in text and "4 rank(s)" in text, text
    assert steps <= end.env_steps < steps + 2 * 4 and end.counters["updates"] > first.counters["updates"]
    print(f"SLURM submit -> signal -> requeue -> resume -> finish: {time.monotonic() - t0:.1f} s")


def rank_pids(run_dir: Path) -> list[int]:
    """The drlmpi ranks of a job step: python processes whose command line names the run dir (srun's is not)."""
    pids = []
    for p in Path("/proc").iterdir():
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if p.name.isdigit() and b"python" in argv[0] and str(run_dir).encode() in argv:
            pids.append(int(p.name))
    return pids


def kill_wait() -> int:
    """slurmd's KillWait: seconds between the SIGTERM that ends a step's tasks and the SIGKILL."""
    return int(re.search(r"KillWait\s*=\s*(\d+)", sh("scontrol", "show", "config"))[1])


def test_srun_k1_ends_the_step_when_a_rank_is_killed(slurm, tmp_path):
    """SIGKILL to one rank of a running step: `srun -K1` ends the others, the job fails (no requeue). The others get
    SIGTERM, which drlmpi takes as a pre-emption (a final checkpoint, which cannot complete without the dead rank),
    so slurmd's SIGKILL ends them KillWait seconds later: no survivor outlives that."""
    run_dir, out = tmp_path / "run", tmp_path / "job.out"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RUN_DIR": str(run_dir),
           "DRLMPI": str(BIN / "drlmpi"), "PYTHONUNBUFFERED": "1"}
    sub = subprocess.run(["sbatch", "--parsable", "--ntasks=4", "--time=10", f"--output={out}",
                          str(ROOT / "slurm" / "apex.sbatch"), "CartPole-v1", "1000000"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=True)
    job = sub.stdout.strip().split(";")[0]
    try:
        wait_until(lambda: True if (run_dir / "metrics.csv").exists() else None, 240, "the job to train", out)
        ranks = rank_pids(run_dir)
        assert len(ranks) == 4, (ranks, out.read_text())
        t0 = time.monotonic()
        os.kill(max(ranks), 9)
        wait_until(lambda: None if rank_pids(run_dir) else True, 30, "the other ranks to end", out)
        took = time.monotonic() - t0
        wait_until(lambda: True if job_state(job) in ("FAILED", "CANCELLED", "GONE") else None, 60,
                   "the job to end", out)
    finally:
        subprocess.run(["scancel", job], timeout=30)
    text = out.read_text()
    assert took < kill_wait() + 5, f"the step's other ranks lived {took:.1f} s after one was killed"
    assert "requeueing" not in text, text
    print(f"SLURM: a SIGKILLed rank ended its step in {took:.2f} s (KillWait {kill_wait()} s)")


def submit(tmp_path, *args: str, sbatch: tuple[str, ...] = ()) -> tuple[str, Path, Path]:
    """sbatch slurm/drlmpi.sbatch ARGS with 4 tasks: (job id, run dir, output file)."""
    run_dir, out = tmp_path / "run", tmp_path / "job.out"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RUN_DIR": str(run_dir),
           "DRLMPI": str(BIN / "drlmpi"), "PYTHONUNBUFFERED": "1"}
    sub = subprocess.run(["sbatch", "--parsable", "--ntasks=4", f"--output={out}", *sbatch,
                          str(ROOT / "slurm" / "drlmpi.sbatch"), *args],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=True)
    return sub.stdout.strip().split(";")[0], run_dir, out


def test_a_job_reaching_its_time_limit_checkpoints_once_and_requeues(slurm, tmp_path):
    """The generic script under a 1-minute limit whose USR1 comes 35 s before it: the script forwards one signal,
    drlmpi checkpoints and exits 75, and the job requeues itself, all before the limit (no signal from the test)."""
    job, run_dir, out = submit(tmp_path, "apex", "CartPole-v1", "--total-env-steps", "10000000",
                               sbatch=("--time=1", "--signal=B:USR1@35"))
    try:
        wait_until(lambda: True if out.exists() and "requeueing job" in out.read_text() else None, 150,
                   "the requeue before the time limit", out)
        text = out.read_text()
        st = checkpoint.load(run_dir)
    finally:
        subprocess.run(["scancel", job], timeout=30)
    assert text.count("signal: asking drlmpi to checkpoint") == 1 and "TIMEOUT" not in text, text
    assert "stopped by a signal with a complete checkpoint" in text and 0 < st.env_steps < 10_000_000, text


def task_exits(text: str) -> dict[int, int]:
    """{task: exit code} from srun's "task 3: Exited ..." and "tasks 0,2-3: Exited ..." lines (srun groups the tasks
    that end together, so one job may report 0-3 at once or in pieces)."""
    exits = {}
    for tasks, code in re.findall(r"tasks? ([\d,-]+): Exited with exit code (\d+)", text):
        for part in tasks.split(","):
            first, _, last = part.partition("-")
            exits.update(dict.fromkeys(range(int(first), int(last or first) + 1), int(code)))
    return exits


def test_scancel_of_a_running_job_leaves_a_complete_checkpoint(slurm, tmp_path):
    """A plain `scancel`: slurmd TERMs the step's tasks (the batch shell only notes its own TERM); drlmpi writes its
    final checkpoint within KillWait and exits 75. (A cancelled job is not requeued: it is the user's stop; submit it
    again with the same RUN_DIR to continue.)"""
    job, run_dir, out = submit(tmp_path, "apex", "CartPole-v1", "--total-env-steps", "10000000",
                               sbatch=("--time=10",))
    try:
        wait_until(lambda: True if (run_dir / "metrics.csv").exists() else None, 240, "the job to train", out)
        time.sleep(3)
        sh("scancel", job)
        wait_until(lambda: True if job_state(job) not in ("RUNNING", "COMPLETING") else None, 120,
                   "the cancelled job to end", out)
    finally:
        subprocess.run(["scancel", job], timeout=30)
    text = out.read_text()
    st = checkpoint.load(run_dir)  # complete, parts verified
    assert "stopped by a signal with a complete checkpoint" in text and 0 < st.env_steps, text
    assert "Traceback" not in text and task_exits(text) == dict.fromkeys(range(4), 75), text
