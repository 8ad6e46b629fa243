"""A run's directory and rank 0's outputs: config, metrics CSV, TensorBoard events, progress, checkpoints.

  <run_dir>/config.json          the full config, with algo and world size
  <run_dir>/metrics.csv          one row every `log_every` seconds (fixed columns per algorithm)
  <run_dir>/tb/                  TensorBoard event files, same scalars
  <run_dir>/checkpoints/ckpt-<env_steps>-<id>.h5 (+ parts-<id>/)   see drlmpi.checkpoint
  <run_dir>/.lock                the job using the directory holds it (flock); a second job is refused

A resumed run continues in the same directory: metrics.csv is rewritten from the checkpoint's metrics
history (rows after the checkpoint belonged to the lost part of the run) and goes on from there.
"""

import csv
import fcntl
import json
import os
import re
import socket
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

from drlmpi.errors import UserError

LOCK = ".lock"  # <run_dir>/.lock: held (flock) by the job that writes in the run directory
_held: dict[Path, int] = {}  # run directory -> the open lock file of this process (the kernel frees it at exit)


def default_run_dir(algo: str, env: str) -> str:
    """runs/<algo>-<env>-<date>-<time>[-<n>], created here (mkdir is atomic): two jobs never get the same one."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", env)
    base = f"runs/{algo}-{safe}-{time.strftime('%Y%m%d-%H%M%S')}"
    Path("runs").mkdir(mode=0o700, exist_ok=True)
    for n in range(1, 10_000):
        name = base if n == 1 else f"{base}-{n}"
        try:
            Path(name).mkdir(mode=0o700)
            return name
        except FileExistsError:
            continue
    raise UserError(f"cannot create a run directory {base}-*: give one with --run-dir")


def lock(run_dir: str | Path) -> None:
    """Hold the run directory for this process (rank 0 of a job) until it exits, even by SIGKILL (flock). A second
    job on it gets a UserError naming the holder; a file system without flock gets a warning, not a refusal."""
    d = Path(run_dir).resolve()
    if d in _held:
        return
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(d / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise UserError(f"run directory {run_dir} is in use by another job ({holder}): wait for it to end or "
                        "choose another --run-dir") from None
    except OSError as e:  # (ENOLCK, EINVAL, ENOSYS: a file system mounted without locks)
        os.close(fd)
        print(f"drlmpi: warning: cannot lock {run_dir} ({e.strerror}): make sure no other job uses it", flush=True)
        return
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
    _held[d] = fd


WANDB_MODES = ("online", "offline", "disabled")
WANDB_ID = "wandb-id"  # a run directory's W&B run id: made on a fresh start, reused by a resume


def wandb_mode() -> str:
    """WANDB_MODE (set but empty: as if unset), else online where WANDB_API_KEY is set, else offline."""
    for key in ("WANDB_MODE", "WANDB_API_KEY"):  # (wandb itself refuses an empty mode)
        if not os.environ.get(key, "x"):
            del os.environ[key]
    return os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


def require_wandb(project: str) -> None:
    """UserError (one line, before the job starts) for --set wandb=PROJECT without the wandb package, with a name
    W&B refuses, or with a WANDB_MODE it does not know."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", project):
        raise UserError(f"config: wandb={project!r}: a W&B project name (letters, digits, _ . -, at most 128; the "
                        "entity comes from WANDB_ENTITY)")
    if wandb_mode() not in WANDB_MODES:
        raise UserError(f"WANDB_MODE={os.environ['WANDB_MODE']!r}: one of {', '.join(WANDB_MODES)}")
    try:
        import wandb  # noqa: F401
    except ImportError as e:
        raise UserError(f"config: wandb=PROJECT needs the wandb package (pip install 'drlmpi[wandb]'): {e}") from None


def start_wandb(run_dir: Path, algo: str, config: dict, resumed: bool):
    """A Weights & Biases run for the metrics rows (x axis: env_steps): project config['wandb'], named after the
    run directory; a fresh start makes a new run id (kept in <run_dir>/wandb-id), a resume continues that run;
    offline (files under <run_dir>/wandb, `wandb sync` uploads them) unless WANDB_MODE or WANDB_API_KEY say online.
    A run W&B cannot start is one line (UserError)."""
    import secrets

    import wandb

    id_file = run_dir / WANDB_ID
    run_id = id_file.read_text().strip() if resumed and id_file.exists() else secrets.token_hex(8)
    id_file.write_text(run_id + "\n")
    try:
        run = wandb.init(project=config["wandb"], name=run_dir.name, id=run_id, resume="allow", dir=str(run_dir),
                         config={"algo": algo, **config}, mode=wandb_mode(), settings=wandb.Settings(console="off"))
        run.define_metric("*", step_metric="env_steps")
    except Exception as e:  # noqa: BLE001 - wandb's own errors (no login, no network, a refused name, ...)
        raise UserError(f"config: wandb={config['wandb']}: W&B could not start a run: {type(e).__name__}: {e}") \
            from None
    return run


class RunLog:
    """Metrics, progress and checkpoints of one run; used on one rank (rank 0)."""

    def __init__(self, run_dir: str, algo: str, config: dict, columns: list[str], frames_per_step: int = 1,
                 world_size: int = 1, resumed=None):
        """resumed: the checkpoint.State a resumed run continues from (its metrics, returns and wall time)."""
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.json").write_text(
            json.dumps({"algo": algo, "world_size": world_size, **config}, indent=2, sort_keys=True))
        self.algo, self.config = algo, config
        self.columns = ["time", "env_steps", "env_frames", "frames_per_s", "updates", "updates_per_s", "recent_return",
                        *columns]
        self._csv_file = open(self.dir / "metrics.csv", "w", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=self.columns, extrasaction="ignore")
        self._csv.writeheader()
        self._rows: list[dict] = []  # the metrics history, saved with every checkpoint
        if resumed is not None:
            cols = [c for c in self.columns if c in resumed.metrics]
            for i in range(len(resumed.metrics[cols[0]]) if cols else 0):
                self._rows.append({c: float(resumed.metrics[c][i]) for c in cols})
                self._csv.writerow(self._rows[-1])
            self._csv_file.flush()
        from torch.utils.tensorboard import SummaryWriter

        self._tb = SummaryWriter(str(self.dir / "tb"))
        self._wandb = start_wandb(self.dir, algo, config, resumed is not None) if config.get("wandb") else None
        self.frames_per_step = frames_per_step
        self.returns: deque[float] = deque(resumed.returns if resumed else (), maxlen=100)
        self.start = time.monotonic() - (resumed.counters.get("wall_time", 0.0) if resumed else 0.0)
        now = time.monotonic()
        self._last_log = self._last_ckpt = self._last_progress = now
        self._tty = sys.stderr.isatty()
        self._last_rate = (now, resumed.env_steps if resumed else 0,
                           int(resumed.counters.get("updates", 0)) if resumed else 0)  # time, env_steps, updates
        self.rates = (0.0, 0.0)  # frames/s, updates/s
        self.steps = resumed.env_steps if resumed else 0  # env steps of the latest tick

    def episode(self, ret: float) -> None:
        self.returns.append(ret)

    @property
    def recent_return(self) -> float:
        return sum(self.returns) / len(self.returns) if self.returns else float("nan")

    def tick(self, env_steps: int, updates: int, total: int, metrics=None) -> None:
        """Call often: writes a metrics row every `log_every` s and refreshes the progress line.

        metrics: a dict of extra columns, or a function returning one (called only when a row is written).
        """
        now = time.monotonic()
        self.steps = env_steps
        t0, s0, u0 = self._last_rate
        if now - t0 >= 1.0:
            self.rates = ((env_steps - s0) * self.frames_per_step / (now - t0), (updates - u0) / (now - t0))
            self._last_rate = (now, env_steps, updates)
        if now - self._last_log >= self.config.get("log_every", 10.0):
            self.write_row(env_steps, updates, (metrics() if callable(metrics) else metrics) or {})
        if (self._tty and now - self._last_progress >= 0.5) or now - self._last_progress >= self.config.get(
                "log_every", 10.0):
            self._last_progress = now
            self.progress(env_steps, total)

    def write_row(self, env_steps: int, updates: int, metrics: dict) -> None:
        now = time.monotonic()
        self._last_log = now
        row = {"time": round(now - self.start, 3), "env_steps": env_steps,
               "env_frames": env_steps * self.frames_per_step, "frames_per_s": round(self.rates[0], 1),
               "updates": updates, "updates_per_s": round(self.rates[1], 2),
               "recent_return": self.recent_return, **metrics}
        self._csv.writerow(row)
        self._csv_file.flush()
        self._rows.append({k: v for k, v in row.items() if isinstance(v, int | float)})
        for k, v in row.items():
            if k not in ("time", "env_steps") and isinstance(v, int | float):
                self._tb.add_scalar(k, v, env_steps)
        if self._wandb is not None:
            self.to_wandb(lambda run: run.log(self._rows[-1]))

    def to_wandb(self, call) -> None:
        """call(the W&B run); a W&B failure costs W&B's rows, never the run (one warning, then no more W&B)."""
        try:
            call(self._wandb)
        except Exception as e:  # noqa: BLE001 - wandb's own errors (its service process gone, ...)
            sys.stderr.write(f"drlmpi: warning: W&B logging stopped: {type(e).__name__}: {e}\n")
            self._wandb = None

    def progress(self, env_steps: int, total: int) -> None:
        frac = env_steps / max(1, total)
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        line = (f"[{bar}] {env_steps * self.frames_per_step:,} frames {self.rates[0]:,.0f} frames/s  "
                f"return {self.recent_return:.1f}  {self.rates[1]:.1f} updates/s")
        sys.stderr.write(("\r" + line + "\033[K") if self._tty else line + "\n")
        sys.stderr.flush()

    def checkpoint_due(self) -> bool:
        return time.monotonic() - self._last_ckpt >= self.config.get("checkpoint_every", 600.0)

    def checkpoint_started(self) -> None:
        self._last_ckpt = time.monotonic()

    def wall_time(self) -> float:
        """Seconds since the run started (across resumes)."""
        return time.monotonic() - self.start

    def history(self) -> dict:
        """The metric rows written so far: column -> float64 [rows] (NaN where a row lacks the column)."""
        return {c: np.array([r.get(c, np.nan) for r in self._rows], np.float64) for c in self.columns}

    def close(self, env_steps: int) -> None:
        """Close the files (the last metrics row is written with the final checkpoint: Lifecycle.begin)."""
        if self._tty:
            self.progress(env_steps, env_steps)
            sys.stderr.write("\n")
        self._tb.close()
        self._csv_file.close()
        if self._wandb is not None:
            self.to_wandb(lambda run: run.finish())
