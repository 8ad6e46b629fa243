"""R2D3: recurrent replay distributed DQN from demonstrations (Gulcehre et al., 2019): R2D2 plus a demo replay.

Roles, sequences, loss and acting are R2D2's (drlmpi.algos.r2d2). What R2D3 adds:
  demos     `--set demos=FILE.h5[,FILE2.h5]`: episodes written by `drlmpi record` (docs/demonstrations.md). Every
            replay shard loads them once, cuts each episode into sequences as actors cut theirs (a zero recurrent
            state at each start; burn-in as for agent sequences), keeps every S-th (S shards) and holds them in a
            demo replay beside its agent replay, prioritized the same way (initial priority: the largest seen).
  learner   each element of a batch comes from the demo replays with probability `demo_ratio`, sampled globally
            over shards in proportion to their demo totals; its importance weight uses the demo replays'
            minimum; new priorities go back to the replay it came from. The `demo_fraction` column logs the
            fraction of demo rows actually trained on.
The paper's demo_ratio is 1/256 for its Atari-sized tasks; a task of a few hundred steps such as MountainCar-v0
needs far more of its few demo steps in each batch: the default here is 1/4. Against R2D2's defaults R2D3 also
makes twice the updates per env step (0.2) and copies its target twice as often (every 250 updates), so values
propagate back along the demonstrations' ~120 steps within 100K env steps (see BENCHMARKS.md).

Messages: R2D2's (drlmpi.algos.r2d2); SAMPLE_REQUEST carries the demo row count as its 4th word, SAMPLE_REPLY the
demo replay's statistics as words 4-7, PRIORITIES the demo rows' slots as -1 - slot (replay.shard).
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from drlmpi import demos as demo_files
from drlmpi import value_based as vb
from drlmpi.algos import r2d2
from drlmpi.checkpoint import State
from drlmpi.config import opt
from drlmpi.envs import spaces
from drlmpi.errors import UserError
from drlmpi.replay import SequenceBuilder
from drlmpi.runtime import RoleSpec, Runtime

LAYOUT = RoleSpec(fixed=(("learner", 1), ("replay", 1)), min_actors=1, serial_ok=False)
build_net, learner_parts, load_policy = r2d2.build_net, r2d2.learner_parts, r2d2.load_policy


@dataclass
class Config(r2d2.Config):
    demos: str = opt("", "demonstration files (drlmpi record), comma-separated; required")
    demo_ratio: float = opt(0.25, "probability that a batch element comes from the demo replay")

    DEFAULTS: ClassVar[dict] = {"replay_ratio": 0.2, "target_update_every": 250}

    def check_own(self):
        if not self.demos.strip():
            raise UserError("config: r2d3 needs demonstrations: --set demos=FILE.h5[,FILE2.h5] (see drlmpi record)")
        if not 0 <= self.demo_ratio <= 1:
            raise UserError(f"config: demo_ratio must be in [0, 1], got {self.demo_ratio}")

    def demo_paths(self) -> list[str]:
        return [p.strip() for p in self.demos.split(",") if p.strip()]


def validate(cfg: Config) -> None:
    """Rank 0, before the job starts: every demo file opens and was recorded on this env (one line, exit 2)."""
    check_demos(cfg, *spaces(cfg.env))


def check_demos(cfg: Config, obs_space, act_space) -> int:
    """Open every demo file (one-line UserError if one is missing, damaged or recorded on another env); the
    number of demo steps."""
    return sum(len(demo_files.load(p, cfg.env, obs_space, act_space).actions) for p in cfg.demo_paths())


def demo_sequences(cfg: Config, obs_space, act_space, shard: int, shards: int) -> dict[str, np.ndarray]:
    """Every `shards`-th sequence (from the `shard`-th) of the demo episodes, cut as an actor cuts its own."""
    builder = SequenceBuilder(1, cfg.seq_len, cfg.seq_overlap, cfg.burn_in, cfg.gamma, obs_space, cfg.lstm)
    zero = np.zeros((1, 2, cfg.lstm), np.float32)
    out: list[dict[str, np.ndarray]] = []
    for path in cfg.demo_paths():
        for obs, action, step in demo_files.load(path, cfg.env, obs_space, act_space).steps():
            rows = builder.push(obs, action, step, zero)
            if rows is not None:
                out.append(rows)
    rows = {k: np.concatenate([r[k] for r in out]) for k in builder.fields} if out else \
        {k: np.zeros((0, *shape), dtype) for k, (shape, dtype) in builder.fields.items()}
    return {k: v[shard::shards] for k, v in rows.items()}


def sequences(cfg: Config, obs_space, act_space) -> vb.Rows:
    """R2D2's rows, with the demonstrations for the shards."""
    rows = r2d2.sequences(cfg, obs_space, act_space)
    rows.demos = lambda s, n: demo_sequences(cfg, obs_space, act_space, s, n)
    return rows


def setup(rt: Runtime, cfg: Config) -> vb.Planes:
    """Collective: the lead learner's weights plane and the replay plane of sequences, with the demos' shards."""
    return vb.setup(rt, cfg, rt.layout.ranks("learner")[:1], sequences)


def run_learner(rt: Runtime, cfg: Config, planes: vb.Planes, resumed: State | None) -> dict:
    """The replay learner (value_based.run_learner) with R2D2's `learn`, batches mixing demo rows."""
    return vb.run_learner(rt, cfg, planes, resumed, "r2d3",
                          lambda net, target, batch, device: r2d2.learn(net, target, batch, device, cfg),
                          demo_ratio=cfg.demo_ratio)


ROLES = {"actor": r2d2.run_actor, "replay": vb.run_replay, "learner": run_learner}
