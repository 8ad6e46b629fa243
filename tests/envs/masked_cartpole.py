"""CartPole-v1 without its two velocity components, registered on import as `masked_cartpole:CartPoleNoVel-v1`.

The observation keeps the cart position and the pole angle [2]: the velocities must be inferred from the history,
so a memoryless policy cannot balance it for long (a memory task, for R2D2)."""

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv

KEEP = [0, 2]  # cart position, pole angle (of x, x_dot, theta, theta_dot)


class NoVelocity(gym.ObservationWrapper):
    def __init__(self, env):
        super().__init__(env)
        box = env.observation_space
        self.observation_space = gym.spaces.Box(box.low[KEEP], box.high[KEEP], (len(KEEP),), np.float32)

    def observation(self, obs):
        return obs[KEEP].astype(np.float32)


def make(**kwargs):
    return NoVelocity(CartPoleEnv(**kwargs))


gym.register("CartPoleNoVel-v1", entry_point=make, max_episode_steps=500, reward_threshold=475.0)
