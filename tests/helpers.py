"""Test helpers: run drlmpi or a script under the venv's mpiexec, always with a timeout."""

import os
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
