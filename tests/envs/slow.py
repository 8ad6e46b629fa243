"""CartPole-v1 that sleeps on some ranks, registered on import as `slow:SlowCartPole-v1`: a straggling simulator.

Each step sleeps DRLMPI_TEST_SLOW_S seconds (default 0.002) on the MPI ranks listed in DRLMPI_TEST_SLOW_RANKS
(comma-separated world ranks, default "1"; the rank read from the launcher's PMI_RANK, OMPI_COMM_WORLD_RANK or
SLURM_PROCID), and not at all on the others."""

import os
import time

import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv


def world_rank() -> int:
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


class Slow(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        ranks = {int(r) for r in os.environ.get("DRLMPI_TEST_SLOW_RANKS", "1").split(",") if r.strip()}
        self.sleep = float(os.environ.get("DRLMPI_TEST_SLOW_S", "0.002")) if world_rank() in ranks else 0.0

    def step(self, action):
        if self.sleep:
            time.sleep(self.sleep)
        return self.env.step(action)


def make(**kwargs):
    return Slow(CartPoleEnv(**kwargs))


gym.register("SlowCartPole-v1", entry_point=make, max_episode_steps=500, reward_threshold=475.0)
