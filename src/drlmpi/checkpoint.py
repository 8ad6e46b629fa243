"""HDF5 checkpoints: config, weights and counters; no pickle anywhere.

Layout of a file:
  attrs: format="drlmpi-checkpoint", version, algo, env, config (JSON), complete (written last)
  /weights/<net>/<param>   float arrays (e.g. /weights/online/torso.net.0.weight)
  /counters                attrs: env_steps, updates, wall_time, ...

Writes are atomic: a temporary file in the same directory, flushed and fsynced, then
renamed over the target, then the directory fsynced; `complete` is set last, so a
file cut short by a crash is rejected on read rather than silently partial.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from drlmpi.errors import CheckpointError

FORMAT = "drlmpi-checkpoint"
VERSION = 1
SUFFIX = ".h5"


@dataclass
class Checkpoint:
    path: Path
    algo: str
    env: str
    config: dict
    weights: dict[str, dict[str, np.ndarray]]  # net name -> param name -> array
    counters: dict[str, float]


def save(path: str | Path, *, algo: str, env: str, config: dict, weights: dict[str, dict[str, np.ndarray]],
         counters: dict[str, float]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            f.attrs["algo"] = algo
            f.attrs["env"] = env
            f.attrs["config"] = json.dumps(config, sort_keys=True)
            f.attrs["complete"] = False
            for net, params in weights.items():
                g = f.create_group(f"weights/{net}")
                for name, arr in params.items():
                    g.create_dataset(name, data=np.asarray(arr))
            c = f.create_group("counters")
            for k, v in counters.items():
                c.attrs[k] = v
            f.flush()
            f.attrs["complete"] = True
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def newest(run_dir: str | Path) -> Path:
    """The newest checkpoint of a run directory (the most env steps)."""
    files = sorted(Path(run_dir).glob(f"checkpoints/ckpt-*{SUFFIX}"))  # names carry zero-padded env steps
    if not files:
        raise CheckpointError(f"no checkpoint in {run_dir}/checkpoints")
    return files[-1]


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or the newest checkpoint of a run directory."""
    path = Path(path)
    if path.is_dir():
        return newest(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint file or a run directory's newest one; raise CheckpointError with the reason."""
    path = resolve(path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise CheckpointError(f"{path}: not a readable HDF5 file (corrupt or truncated?)") from None
    try:
        with f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a drlmpi checkpoint")
            version = int(f.attrs.get("version", -1))
            if version > VERSION:
                raise CheckpointError(f"{path}: format version {version} is newer than this drlmpi reads ({VERSION})")
            if not bool(f.attrs.get("complete", False)):
                raise CheckpointError(f"{path}: incomplete checkpoint (the writer stopped mid-write)")
            weights = {}
            for net, group in f["weights"].items():
                weights[net] = {}
                group.visititems(lambda name, obj, d=weights[net]: d.__setitem__(name, obj[()])
                                 if isinstance(obj, h5py.Dataset) else None)
            return Checkpoint(
                path=path, algo=str(f.attrs["algo"]), env=str(f.attrs["env"]),
                config=json.loads(f.attrs["config"]), weights=weights,
                counters={k: v.item() if hasattr(v, "item") else v for k, v in f["counters"].attrs.items()},
            )
    except CheckpointError:
        raise
    except (KeyError, OSError, ValueError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint ({type(e).__name__}: {e})") from None
