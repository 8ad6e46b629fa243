"""CartPole-v1 that raises, registered on import as `flaky:FlakyCartPole-v1`: a flaky simulator.

A step of an instance raises RuntimeError with probability 1 / DRLMPI_TEST_FLAKY_EVERY (default 2000: each env of a
vector fails once every 2,000 of its steps on average; each instance draws from its own generator, seeded from the
process and the number of instances built before it), or on exactly every EVERY-th step of the instance when
DRLMPI_TEST_FLAKY_EXACT=1; every DRLMPI_TEST_FLAKY_RESET_EVERY-th reset of a process (default 0: never) raises from
`reset`."""

import os

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv

COUNTS = {"resets": 0, "instances": 0}


class Flaky(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        COUNTS["instances"] += 1
        self.rng, self.steps = np.random.default_rng([os.getpid(), COUNTS["instances"]]), 0
        self.every = int(os.environ.get("DRLMPI_TEST_FLAKY_EVERY", "2000"))
        self.exact = os.environ.get("DRLMPI_TEST_FLAKY_EXACT") == "1"

    def step(self, action):
        self.steps += 1
        if (self.steps % self.every == 0) if self.exact else (self.rng.random() * self.every < 1):
            raise RuntimeError(f"flaky simulator: step {self.steps} of an instance failed")
        return self.env.step(action)

    def reset(self, **kwargs):
        COUNTS["resets"] += 1
        every = int(os.environ.get("DRLMPI_TEST_FLAKY_RESET_EVERY", "0"))
        if every and COUNTS["resets"] % every == 0:
            raise RuntimeError(f"flaky simulator: reset {COUNTS['resets']} failed")
        return self.env.reset(**kwargs)


def make(**kwargs):
    return Flaky(CartPoleEnv(**kwargs))


gym.register("FlakyCartPole-v1", entry_point=make, max_episode_steps=500, reward_threshold=475.0)
