"""A tiny env registered on import, to test `--env chain_env:DrlmpiChain-v0`."""

import gymnasium as gym
import numpy as np


class Chain(gym.Env):
    """Walk right along a chain of 8 states; reward 1 at the right end. Obs: one-hot position [8]."""

    observation_space = gym.spaces.Box(0.0, 1.0, (8,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return np.eye(8, dtype=np.float32)[self.pos], {}

    def step(self, action):
        self.pos = min(7, self.pos + 1) if action == 1 else max(0, self.pos - 1)
        done = self.pos == 7
        return np.eye(8, dtype=np.float32)[self.pos], float(done), done, False, {}


gym.register("DrlmpiChain-v0", entry_point=Chain, max_episode_steps=30)
