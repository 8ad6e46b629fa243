"""Run configuration: dataclasses with a docstring per field, a TOML file, and `--set key=value` overrides.

`Common` holds the fields every algorithm has; each algorithm's `Config` (in its own
file under algos/) extends it with its own. Precedence: defaults < TOML file < --set < flags.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from drlmpi.errors import UserError


def opt(default, doc: str):
    """A config field with its docstring."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class Common:
    env: str = opt("CartPole-v1", "gymnasium id: `CartPole-v1`, `ALE/Pong-v5`, or `module:Env-v0`")
    seed: int = opt(0, "root seed; every RNG is derived from it and the rank")
    total_env_steps: int = opt(100_000, "environment steps (agent steps, all envs and actors) to train for")
    num_envs: int = opt(1, "environments stepped together per acting rank")
    run_dir: str = opt("", "output directory; default runs/<algo>-<env>-<time>")
    checkpoint_every: float = opt(600.0, "seconds between checkpoints (one is always written at the end)")
    keep_checkpoints: int = opt(3, "checkpoints kept in <run_dir>/checkpoints (older ones are deleted)")
    checkpoint_replay: bool = opt(True, "checkpoints hold the replay buffer (each shard writes its own part file)")
    log_every: float = opt(10.0, "seconds between metric rows (and progress lines when not on a terminal)")
    torch_threads: int = opt(0, "torch threads per rank; 0 shares this host's cores among its ranks")
    device: str = opt("auto", "learner device: auto (cuda if available), cpu, cuda")
    layout: str = opt("", "role counts, e.g. learner=2,replay=4,ps=1; the other ranks are actors")
    pause_at_env_steps: int = opt(0, "end this run with a final checkpoint once this many env steps are done, while "
                                     "schedules still span total_env_steps (resume to go on); 0: never. PBT sets it "
                                     "to each member's next ready point")


@dataclass
class AllreduceOption:
    """Config mixin of algorithms with several learner ranks: how they average gradients (comm.allreduce; each
    Config's check() validates it against BACKENDS)."""

    allreduce: str = opt("auto", "gradient allreduce between learner ranks: auto (nccl on GPU, else mpi), mpi, "
                                 "gloo, nccl")


@dataclass(frozen=True)
class Hparam:
    """A hyperparameter population-based training may search (algos.pbt): config `keys` set together (the first
    holds the value; each other keeps its default ratio to it, e.g. lr_final to lr), a prior `lo`..`hi` and a
    scale: `log` (perturbed by multiplying, drawn log-uniformly), `linear` (multiplied, drawn uniformly) or `log1m`
    (for discounts: 1 - value is multiplied and drawn log-uniformly)."""

    keys: tuple[str, ...]
    lo: float
    hi: float
    scale: str = "log"


def search_space(cls) -> dict[str, Hparam]:
    """The hyperparameters an algorithm's Config declares searchable: the `SEARCH` dicts of its classes, merged."""
    out: dict[str, Hparam] = {}
    for klass in reversed(cls.__mro__):
        out.update(vars(klass).get("SEARCH", {}))
    return out


def field_docs(cls) -> dict[str, str]:
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.lower() in ("true", "1", "yes", "on")
    raise ValueError


def _int(value) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, str):
        value = float(value.replace("_", ""))
    if isinstance(value, float) and not value.is_integer():
        raise ValueError
    return int(value)


def _float(value) -> float:
    if isinstance(value, bool):
        raise ValueError
    return float(value)


def _str(value) -> str:
    if not isinstance(value, str):
        raise ValueError
    return value


SCALARS = {bool: _bool, int: _int, float: _float, str: _str}


def _coerce(name: str, kind, value):
    """Convert a TOML value or a --set string to the field's type, or raise UserError."""
    origin = typing.get_origin(kind)
    try:
        if kind in SCALARS:
            return SCALARS[kind](value)
        if origin in (list, tuple):
            (inner,) = set(typing.get_args(kind)) - {Ellipsis}
            if isinstance(value, str):
                value = [v for v in value.strip("[]() ").split(",") if v.strip()]
            return origin(_coerce(name, inner, v) for v in value)
        if origin in (typing.Union, types.UnionType):
            return value
    except (ValueError, TypeError, OverflowError):
        pass
    raise UserError(f"config: bad value for {name}: {value!r} (expected {getattr(kind, '__name__', kind)})")


def build(cls, toml_path: str | None = None, sets: list[str] = (), base: dict | None = None, **flags):
    """Build a config of dataclass `cls` from defaults, a TOML file, `key=value` strings and flags (not None).

    Precedence: defaults < `cls.ATARI` (a dict of defaults for `ALE/...` envs, if the class has one) < the TOML
    file < `key=value` < flags. base: the values to start from instead of the defaults (a resumed run's config).
    """
    hints = typing.get_type_hints(cls)
    values: dict = {k: v for k, v in (base or {}).items() if k in hints}
    if toml_path:
        try:
            data = tomllib.loads(Path(toml_path).read_text())
        except FileNotFoundError:
            raise UserError(f"config file not found: {toml_path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"config file {toml_path}: {e}") from None
        values.update(data)
    for item in sets:
        key, sep, val = item.partition("=")
        if not sep:
            raise UserError(f"--set expects key=value, got '{item}'")
        values[key.strip().replace("-", "_")] = val.strip()
    values.update({k: v for k, v in flags.items() if v is not None})
    env = values.get("env", getattr(cls, "env", ""))
    if str(env).startswith("ALE/"):  # the algorithm's Atari defaults: above its own, below everything given
        for k, v in getattr(cls, "ATARI", {}).items():
            values.setdefault(k, v)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise UserError(f"config: unknown key '{unknown[0]}' for {cls.__module__.rsplit('.', 1)[-1]} "
                        f"(see `drlmpi config --algo ...`)")
    cfg = cls(**{k: _coerce(k, hints[k], v) for k, v in values.items()})
    check = getattr(cfg, "check", None)
    if check:
        check()
    return cfg


def require_at_least(cfg, names, least: int = 1) -> None:
    """Raise UserError naming the first of these config fields below `least`."""
    for name in names:
        if getattr(cfg, name) < least:
            raise UserError(f"config: {name} must be >= {least}, got {getattr(cfg, name)}")


def require_choice(cfg, name: str, choices) -> None:
    """Raise UserError if config field `name` is not one of `choices`."""
    if getattr(cfg, name) not in choices:
        raise UserError(f"config: {name} must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}")


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict):
    """Rebuild a config from a saved dict (e.g. a checkpoint), ignoring keys this version does not know."""
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(k, hints[k], v) for k, v in data.items() if k in hints})

