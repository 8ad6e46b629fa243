"""CartPole-v1 that raises, registered on import as `flaky:FlakyCartPole-v1`: a flaky simulator.

Every DRLMPI_TEST_FLAKY_EVERY-th step of an instance (default 2000: each env of a vector fails once every 2,000 of
its own steps, a rebuilt one 2,000 steps after it was built) raises RuntimeError from `step`, and every
DRLMPI_TEST_FLAKY_RESET_EVERY-th reset of a process (default 0: never) raises from `reset`."""

import os

import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv

COUNTS = {"steps": 0, "resets": 0}


class Flaky(gym.Wrapper):
    steps = 0  # this instance's

    def step(self, action):
        self.steps += 1
        COUNTS["steps"] += 1
        if self.steps % int(os.environ.get("DRLMPI_TEST_FLAKY_EVERY", "2000")) == 0:
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
