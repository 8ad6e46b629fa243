"""Test helpers: run drlmpi or a script under the venv's mpiexec, always with a timeout."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MPIEXEC = str(BIN / "mpiexec")
DRLMPI = str(BIN / "drlmpi")


def run(cmd: list[str], timeout: float = 120, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run a command with a timeout (raises subprocess.TimeoutExpired, never hangs)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)


def mpirun(n: int, args: list[str], timeout: float = 120, env: dict | None = None, cwd=None):
    """`mpiexec -n N <args>` with a timeout."""
    return run([MPIEXEC, "-n", str(n), *args], timeout=timeout, env=env, cwd=cwd)


def script(name: str) -> str:
    return str(ROOT / "tests" / "mpi" / "scripts" / name)


def layout_table(stdout: str) -> list[tuple[int, str, int, str]]:
    """The (rank, role, threads, host) rows of the layout table drlmpi prints."""
    import re

    rows = [re.match(r"\s*(\d+)\s+([a-z]+)\s+(\d+)\s+(\S+)$", line) for line in stdout.splitlines()]
    return [(int(m[1]), m[2], int(m[3]), m[4]) for m in rows if m]


def ac_cmd(algo: str, run_dir, steps: int, *extra: str) -> list[str]:
    """drlmpi on CartPole-v1 for `steps` env steps into run_dir, logging every second."""
    return [DRLMPI, "--algo", algo, "--env", "CartPole-v1", "--total-env-steps", str(steps), "--run-dir",
            str(run_dir), "--set", "log_every=1", *extra]


def check_one_rank_runs_serially(algo: str, d) -> None:
    r = run(ac_cmd(algo, d, 3000), timeout=180)
    assert r.returncode == 0 and "done: " in r.stdout, r.stdout + r.stderr


def role_pss(stdout: str, role: str) -> float:
    """A role's mean proportional set size at the end (MiB), from the summary a job prints."""
    line = next(x for x in stdout.splitlines() if x.startswith("memory at the end"))
    return float(re.search(rf"\b{role} (\d+) = ", line).group(1))


def check_four_ranks_run_and_evaluate(algo: str, roles: list[str], d, *extra: str, torch_free: bool = False) -> None:
    """4 ranks run 20K steps with these roles (and extra arguments) and save every rank's RNG and metrics; the
    checkpoint evaluates. torch_free: the actors import no torch, holding no model (GA3C, SEED RL) or acting with
    a numpy one (IMPALA, APPO on CartPole): under 100 MiB PSS each; torch's import alone is about 130."""
    import json

    from drlmpi import checkpoint

    r = mpirun(4, ac_cmd(algo, d, 20_000, *extra), timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    if torch_free:
        assert role_pss(r.stdout, "actor") < 100, out
    assert [row[1] for row in layout_table(r.stdout)] == roles, out
    assert "done: 20" in r.stdout, out
    st = checkpoint.load(d)
    who = sorted(f"{role}-{roles[:k].count(role)}" for k, role in enumerate(roles))
    assert st.env_steps >= 20_000 and sorted(st.rng) == who, st.rng
    rows = (d / "metrics.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    assert float(last["entropy"]) > 0 and int(last["updates"]) > 0, last
    assert len(st.metrics["time"]) == len(rows) - 1 and st.metrics["time"][-1] == float(last["time"]), \
        "the final checkpoint's history ends with the run's last metrics row"
    e = run([DRLMPI, "eval", str(d), "--episodes", "3", "--json"], timeout=120)
    assert e.returncode == 0 and json.loads(e.stdout)["algo"] == algo, e.stderr


def check_sigterm_then_resume_on_3_ranks(algo: str, d, unroll: int, env: dict | None = None,
                                         extra: tuple[str, ...] = ()) -> None:
    """SIGTERM to a 4-rank run: complete checkpoint, exit 75; `--resume auto` on 3 ranks continues 10K steps to the
    new total (within 3 unrolls of `unroll` env steps per worker) with more updates and the metrics history kept."""
    from drlmpi import checkpoint
    from drlmpi.signals import REQUEUE_EXIT

    code, out, err = sigterm_once_logging(4, ac_cmd(algo, d, 10_000_000, *extra), d, env=env)
    assert code == REQUEUE_EXIT, out + err
    st = checkpoint.load(d)
    assert 0 < st.env_steps < 10_000_000 and len(st.rng) == 4
    total = st.env_steps + 10_000
    r = mpirun(3, ac_cmd(algo, d, total, *extra, "--resume", "auto"), timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resuming from {st.path}" in r.stdout
    end = checkpoint.load(d)
    assert total <= end.env_steps < total + 3 * unroll and end.counters["updates"] > st.counters["updates"]
    n = len(st.metrics["time"])  # the history is kept: the checkpoint's rows come first, then the resumed run's
    assert n > 0 and (end.metrics["time"][:n] == st.metrics["time"]).all() and len(end.metrics["time"]) > n
    rows = (d / "metrics.csv").read_text().splitlines()[1:]
    assert len(rows) > n and [float(r.split(",")[0]) for r in rows[:n]] == list(st.metrics["time"]), rows[:n + 1]


def sigterm_once_logging(n: int, args: list[str], run_dir, after: float = 4.0, env: dict | None = None
                         ) -> tuple[int, str, str]:
    """Start `mpiexec -n N <args>`, SIGTERM it `after` seconds once run_dir/metrics.csv exists (within 120 s):
    (exit code, stdout, stderr), all within 90 s of the signal."""
    import signal
    import time

    p = subprocess.Popen([MPIEXEC, "-n", str(n), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    t0 = time.monotonic()
    while not (run_dir / "metrics.csv").exists() and time.monotonic() - t0 < 120:
        time.sleep(0.1)
    time.sleep(after)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=90)
    return p.returncode, out, err


def replay_rows(state, prefix: str = "") -> list[tuple[bytes, float]]:
    """Every row stored in a checkpoint's replay parts (the agent replay's, or with prefix "demo_" the demo
    replay's), as (its fields' bytes, its priority)."""
    from drlmpi import checkpoint

    out = []
    for name in (n for n in state.parts if n.startswith("replay-")):
        _, a = checkpoint.load_part(state, name, "replay")
        keys = sorted(k for k in a if k.startswith(prefix) and k != prefix + "priority" and
                      (prefix or not k.startswith("demo_")))
        out += [(b"".join(a[k][i].tobytes() for k in keys), float(a[prefix + "priority"][i]))
                for i in range(len(a[prefix + "priority"]))]
    return out


def mpi_segments() -> set[str]:
    """MPICH's shared-memory files in /dev/shm (RAM): a job must leave none of its own, however it ends."""
    return {p.name for p in Path("/dev/shm").glob("mpich_shm_*")}
