"""Run configuration: dataclasses with a docstring per field, a TOML file, and `--set key=value` overrides.

Every field is declared once, with its docstring, in the class it belongs to: `Common` holds what every algorithm
has, the families' configs (value_based, actor_critic, central) what theirs share, and each algorithm's `Config`
(in its own file under algos/) only its own fields. An algorithm's other defaults for inherited fields are data, as
its Atari preset is: class dicts merged over the class hierarchy by one rule (`merged`), nearer classes winning:
  DEFAULTS   {field: default} for any environment (applied to the dataclass itself: `Config()` has them)
  ATARI      {field: default} for `ALE/` environments, above DEFAULTS (a family's preset: PRESETS)
  MINATAR    {field: default} for `MinAtar/` environments, above DEFAULTS
  CONTINUOUS {field: default} for the other environments whose actions are a Box (Pendulum), above DEFAULTS
  MUJOCO     {field: default} for gymnasium's MuJoCo environments (Hopper-v5, ...), instead of CONTINUOUS
  SEARCH     {name: Hparam}: what population-based training may search (algos.pbt)
  SAVED_BEFORE {field: value} a field had in effect before it existed: what a saved config without it means
  POSITIVE   field names that must be >= 1
A class's `check_own(self)` checks its own fields only; `check(cfg)` runs every class's, does no I/O and changes
nothing (what needs files, envs or networks is the algorithm module's `validate(cfg)`, run once on rank 0 before
the job starts). Precedence: defaults < the env family's preset < TOML file < --set < flags.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import tomllib

from drlmpi.errors import UserError


def opt(default, doc: str, structural: bool = False, names_module: bool = False):
    """A config field with its docstring; `structural`: a resumed run may not change it (it fixes the networks' or
    the stored data's shapes: lifecycle.resumed_config); `names_module`: its value may be a module path to import,
    which a checkpoint's config may hold only if the user names it again (lifecycle.check_named_modules)."""
    meta = {"doc": doc, "structural": structural, "names_module": names_module}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def module_keys(cls) -> tuple[str, ...]:
    """The config keys of dataclass `cls` whose value may name a module to import."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("names_module"))


def structural_keys(cls) -> tuple[str, ...]:
    """The config keys of dataclass `cls` declared structural."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("structural"))


PRESETS = {"ALE/": "ATARI", "MinAtar/": "MINATAR"}  # env id prefix -> the class dict of that family's defaults
BOX_ACTIONS = {"MuJoCo": "MUJOCO", "Box actions": "CONTINUOUS"}  # labels of the presets chosen by the action space


def preset_of(env: str, cls=None) -> str | None:
    """The name of the preset (a class dict) for env's family, or None. With cls: an env of no prefix family whose
    action space is a Box gets cls's MUJOCO preset if gymnasium's MuJoCo envs define it, else its CONTINUOUS one,
    where cls has them (the env is made once to see its space)."""
    name = next((name for prefix, name in PRESETS.items() if env.startswith(prefix)), None)
    if name is None and cls is not None and merged(cls, "CONTINUOUS"):
        import gymnasium as gym

        from drlmpi.envs import is_box, spaces

        if not is_box(spaces(env)[1]):
            return None
        mujoco = "gymnasium.envs.mujoco" in str(gym.spec(env.rpartition(":")[2]).entry_point)
        return "MUJOCO" if mujoco and merged(cls, "MUJOCO") else "CONTINUOUS"
    return name


def merged(cls, name: str) -> dict:
    """The class dict `name` (DEFAULTS, ATARI, MINATAR, SEARCH) merged over cls's hierarchy, nearer classes winning;
    for a tuple (POSITIVE), the names of every class in order, each once."""
    out: dict = {}
    for klass in reversed(cls.__mro__):
        value = vars(klass).get(name)
        if isinstance(value, dict):
            out.update(value)
        elif value is not None:
            out.update(dict.fromkeys(value))
    return out


def apply_defaults(cls) -> None:
    """Re-declare each field named in cls's own DEFAULTS with that default, keeping the type and the docstring of
    its one declaration (called before @dataclass processes cls: Common.__init_subclass__)."""
    own = vars(cls).get("DEFAULTS", {})
    if not own:
        return
    fields = {}
    for base in reversed(cls.__mro__[1:]):
        fields.update(getattr(base, "__dataclass_fields__", {}))
    annotations = dict(vars(cls).get("__annotations__", {}))
    for name, value in own.items():
        if name not in fields or name in annotations:
            raise TypeError(f"{cls.__qualname__}.DEFAULTS: {name!r} is not an inherited config field")
        annotations[name] = fields[name].type
        meta = fields[name].metadata
        setattr(cls, name, opt(value, meta["doc"], meta.get("structural", False), meta.get("names_module", False)))
    cls.__annotations__ = annotations


@dataclass
class Common:
    env: str = opt("CartPole-v1", "gymnasium id: `CartPole-v1`, `ALE/Pong-v5`, `MinAtar/Breakout-v1`, or "
                                  "`module:Env-v0`", True)
    seed: int = opt(0, "root seed; every RNG is derived from it and the rank")
    total_env_steps: int = opt(100_000, "environment steps (agent steps, all envs and actors) to train for")
    num_envs: int = opt(1, "environments stepped together per acting rank")
    run_dir: str = opt("", "output directory; default runs/<algo>-<env>-<time>")
    checkpoint_every: float = opt(600.0, "seconds between checkpoints (one is always written at the end)")
    keep_checkpoints: int = opt(3, "checkpoints kept in <run_dir>/checkpoints: the ones written last (older ones are "
                                   "deleted, but never the newer ones of a branch this run did not resume)")
    checkpoint_replay: bool = opt(True, "checkpoints hold the replay buffer (each shard writes its own part file)")
    log_every: float = opt(10.0, "seconds between metric rows (and progress lines when not on a terminal)")
    torch_threads: int = opt(0, "torch threads per rank; 0 shares this host's cores among its ranks")
    device: str = opt("auto", "learner device: auto (cuda if available), cpu, cuda")
    layout: str = opt("", "role counts, e.g. learner=2,replay=4,ps=1; the other ranks are actors")
    pause_at_env_steps: int = opt(0, "end this run with a final checkpoint once this many env steps are done, while "
                                     "schedules still span total_env_steps (resume to go on); 0: never. PBT sets it "
                                     "to each member's next ready point")
    wandb: str = opt("", "Weights & Biases project the metrics rows also go to (the wandb extra); offline, under "
                         "<run_dir>/wandb, unless WANDB_MODE or WANDB_API_KEY say online; empty: off")
    max_env_restarts: int = opt(100, "environment failures (an exception in reset or step) a rank survives within "
                                     "10,000 of its env steps: a failed env is rebuilt with a fresh seed; one more "
                                     "(or 10 of one env with no step between) ends the job")

    POSITIVE: ClassVar[tuple[str, ...]] = ("keep_checkpoints",)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        apply_defaults(cls)

    def check_own(self):
        for name in ("checkpoint_every", "log_every"):
            if not getattr(self, name) >= 0:  # (NaN too; 0: as often as possible)
                raise UserError(f"config: {name} must be >= 0 seconds, got {getattr(self, name)}")
        require_at_least(self, ("seed", "total_env_steps", "torch_threads", "pause_at_env_steps", "max_env_restarts"),
                         least=0)


@dataclass
class Model(Common):
    """+ the fields of every algorithm that trains a network: its step size and MLP."""

    lr: float = opt(1e-3, "learning rate (at the start, where it anneals to lr_final)")
    hidden: tuple[int, ...] = opt((64, 64), "MLP hidden sizes (vector observations)", True)

    def check_own(self):
        if not self.lr >= 0:  # (NaN too; 0 freezes the network)
            raise UserError(f"config: lr must be >= 0, got {self.lr}")
        if not self.hidden or min(self.hidden) < 1:
            raise UserError(f"config: hidden sizes must be >= 1, got {list(self.hidden)}")


@dataclass
class Trained(Model):
    """+ the fields of every reinforcement learner trained by gradient steps on returns (the value-based and the
    actor-critic families)."""

    lr_final: float = opt(0.0, "learning rate reached linearly at the end of training")
    gamma: float = opt(0.99, "discount")
    max_grad_norm: float = opt(0.5, "gradient clipping by global norm")
    clip_rewards: str = opt("auto", "clip rewards to [-1, 1] for learning: auto (Atari only), on, off")
    eval_every: int = opt(0, "env steps between greedy evaluations on the lead learner (the eval_return column; "
                             "never pausing it); 0: a twentieth of total_env_steps")
    eval_episodes: int = opt(10, "episodes per greedy evaluation during training; 0: none")

    def check_own(self):
        if not 0 < self.gamma <= 1:
            raise UserError(f"config: gamma must be in (0, 1], got {self.gamma}")
        require_choice(self, "clip_rewards", ("auto", "on", "off"))
        if not self.lr_final >= 0 or not self.max_grad_norm > 0:
            raise UserError(f"config: lr_final must be >= 0 and max_grad_norm > 0, got {self.lr_final}, "
                            f"{self.max_grad_norm}")
        require_at_least(self, ("eval_every", "eval_episodes"), least=0)


@dataclass
class Publishes:
    """Config mixin of the algorithms whose learner (or parameter server) publishes weights to acting ranks."""

    publish_every: int = opt(1, "updates between weight publications to the acting ranks (and the other hosts)")

    POSITIVE: ClassVar[tuple[str, ...]] = ("publish_every",)


@dataclass
class AllreduceOption:
    """Config mixin of algorithms with several learner ranks: how they average gradients (comm.allreduce)."""

    allreduce: str = opt("auto", "gradient allreduce between learner ranks: auto (nccl on GPU, else mpi), mpi, "
                                 "gloo, nccl")

    BACKENDS: ClassVar[tuple[str, ...]] = ("auto", "mpi", "gloo", "nccl")  # comm.allreduce.BACKENDS

    def check_own(self):
        require_choice(self, "allreduce", AllreduceOption.BACKENDS)


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
    """The hyperparameters an algorithm's Config declares searchable: its classes' `SEARCH`, merged."""
    return merged(cls, "SEARCH")


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

    Precedence: defaults (with DEFAULTS) < the env family's merged preset (ATARI for `ALE/...`, MINATAR for
    `MinAtar/...`, CONTINUOUS for other Box-action envs where the class has one) < the TOML file < `key=value` <
    flags. base: the values to start from instead of the defaults (a resumed run's config).
    """
    hints = typing.get_type_hints(cls)
    values: dict = {k: v for k, v in ({**merged(cls, "SAVED_BEFORE"), **base} if base else {}).items() if k in hints}
    if toml_path:
        try:
            data = tomllib.loads(Path(toml_path).read_text())
        except FileNotFoundError:
            raise UserError(f"config file not found: {toml_path}") from None
        except OSError as e:  # a directory, unreadable, a FIFO's error, ...
            raise UserError(f"config file {toml_path}: {e.strerror or e}") from None
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
    preset = preset_of(str(env), cls if base is None else None)  # (a resumed config has every value already)
    if preset:  # the algorithm's defaults for the env family: above its own, below everything given
        for k, v in merged(cls, preset).items():
            values.setdefault(k, v)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise UserError(f"config: unknown key '{unknown[0]}' for {cls.__module__.rsplit('.', 1)[-1]} "
                        f"(see `drlmpi config --algo ...`)")
    cfg = cls(**{k: _coerce(k, hints[k], v) for k, v in values.items()})
    check(cfg)
    return cfg


def check(cfg) -> None:
    """UserError for the first bad value: every field in a POSITIVE below 1, then each class's `check_own` (its own
    fields), from Common down. No I/O, no change."""
    require_at_least(cfg, tuple(merged(type(cfg), "POSITIVE")))
    for klass in reversed(type(cfg).__mro__):
        if "check_own" in vars(klass):
            vars(klass)["check_own"](cfg)


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
    """Rebuild a config from a saved dict (e.g. a checkpoint), ignoring keys this version does not know; a key it
    lacks takes the value configs had before the key existed (`SAVED_BEFORE`), else today's default."""
    hints = typing.get_type_hints(cls)
    data = {**merged(cls, "SAVED_BEFORE"), **data}
    return cls(**{k: _coerce(k, hints[k], v) for k, v in data.items() if k in hints})

