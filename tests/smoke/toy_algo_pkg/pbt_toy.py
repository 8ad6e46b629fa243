"""The PBT paper's toy problem as a one-rank member algorithm (`--set member=toy_algo_pkg.pbt_toy`).

Maximise Q(theta) = 1.2 - (theta0^2 + theta1^2) by gradient ascent on the surrogate
Qhat(theta | h) = 1.2 - (h0 theta0^2 + h1 theta1^2), theta starting at (0.9, 0.9). One "env step" is one gradient
step; its "episode return" is the true Q. With h = (1, 0) or (0, 1) alone a member can reach at most
1.2 - 0.81 = 0.39; copying the other's theta and exploring h can reach 1.2. It runs through drlmpi's lifecycle
(run log, pause points, full-state checkpoints, resume) like every algorithm.
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from drlmpi import lifecycle
from drlmpi.checkpoint import State
from drlmpi.config import Common, Hparam, opt, to_dict
from drlmpi.rundir import RunLog
from drlmpi.runtime import RoleSpec

LAYOUT = RoleSpec(single_process=True)


@dataclass
class Config(Common):
    total_env_steps: int = opt(100, "gradient steps")
    lr: float = opt(0.05, "gradient step size")
    h0: float = opt(1.0, "surrogate weight of theta0^2")
    h1: float = opt(0.0, "surrogate weight of theta1^2")

    SEARCH: ClassVar[dict] = {"h0": Hparam(("h0",), 0.0, 1.0, "linear"), "h1": Hparam(("h1",), 0.0, 1.0, "linear")}


def q(theta: np.ndarray) -> float:
    return float(1.2 - (theta ** 2).sum())


def run(rt, cfg: Config, planes, resumed: State | None) -> dict:
    theta = np.array(resumed.nets["theta"]["theta"], np.float64) if resumed else np.array([0.9, 0.9])
    steps = resumed.env_steps if resumed else 0
    lifecycle.restore_rng(resumed, rt.who, rt.gen)
    log = RunLog(cfg.run_dir, "toy", to_dict(cfg), ["q"], resumed=resumed)
    life = lifecycle.Lifecycle(cfg, log, None, resumed)

    def state() -> State:
        from drlmpi.comm.checkpoint import rng_state

        return State(algo="toy", env=cfg.env, config=to_dict(cfg),
                     counters={"env_steps": steps, "updates": steps, "wall_time": log.wall_time()},
                     nets={"theta": {"theta": theta.copy()}}, rng={rt.who: rng_state(rt.gen)},
                     metrics=log.history(), returns=list(log.returns), layout=lifecycle.layout_dict(rt))

    h = np.array([cfg.h0, cfg.h1])
    while steps < cfg.total_env_steps and not life.signal():
        theta = theta - cfg.lr * 2 * h * theta  # ascent on Qhat
        steps += 1
        log.episode(q(theta))
        log.tick(steps, steps, cfg.total_env_steps, {"q": q(theta)})
    life.begin(steps, state, last=True, final_row=(steps, {"q": q(theta)}))
    return life.close(steps, steps, {"q": q(theta)})


ROLES = {"serial": run}
