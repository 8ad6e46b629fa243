"""Build n-step transitions from a stream of vectorized env steps.

For each of E envs, the last n (obs, action, reward) wait until n rewards are
known, then leave as one transition
  (obs_t, action_t, R = sum_{k<h} gamma^k r_{t+k}, next_obs = obs_{t+h}, discount = gamma^h or 0),
with h = n, or fewer when the episode ends first. discount is 0 when the episode
terminated and gamma^h when it was truncated (time limit: bootstrap from the last obs).

Every env steps together, so the pending steps live in rings [n, E, ...] indexed by the
step count: the common case (an env with n pending steps, not done) is a handful of
vectorized numpy operations for all envs at once; only envs whose episode ended take a
Python loop. Each transition also says which env it came from (`env`), whether its
next_obs is an episode's final obs (`final`: it is not the obs the env acts on next), and
carries any per-step extras given to `push` (e.g. the Q-value of the action taken) from its
first step.
"""

import numpy as np


class NStepBuilder:
    def __init__(self, num_envs: int, n: int, gamma: float):
        self.n, self.gamma, self.E = n, gamma, num_envs
        self.k = 0  # vector steps pushed; step j sits in ring row j % n
        self.count = np.zeros(num_envs, np.int64)  # pending steps per env (< n between pushes)
        self.obs: np.ndarray | None = None  # [n, E, *obs_shape], allocated on the first push
        self.act = np.zeros((n, num_envs), np.int64)
        self.rew = np.zeros((n, num_envs), np.float64)
        self.extras: dict[str, np.ndarray] = {}  # name -> [n, E]
        self.powers = gamma ** np.arange(n + 1)

    def push(self, obs: np.ndarray, actions: np.ndarray, step, **extras: np.ndarray) -> dict[str, np.ndarray] | None:
        """Add one vector step (obs [E, ...] that acted, actions [E], env.Step, extras [E] each).

        Returns the finished transitions (obs, action, ret, next_obs, discount, env, final, extras; [B, ...]),
        or None.
        """
        n, row = self.n, self.k % self.n
        if self.obs is None:
            self.obs = np.zeros((n, *obs.shape), obs.dtype)
        for name, v in extras.items():
            if name not in self.extras:
                self.extras[name] = np.zeros((n, self.E), np.asarray(v).dtype)
            self.extras[name][row] = v
        self.obs[row], self.act[row], self.rew[row] = obs, actions, step.reward
        self.k += 1
        self.count += 1
        done = step.done
        parts = []
        full = np.flatnonzero((self.count == n) & ~done)
        if len(full):  # the oldest pending step of each: rows k-n .. k-1
            rows = (self.k - n + np.arange(n)) % n
            ret = self.powers[:n] @ self.rew[rows][:, full]
            parts.append(self._out(rows[0], full, ret, step.obs[full], np.full(len(full), self.powers[n]), False))
            self.count[full] -= 1
        for e in np.flatnonzero(done):  # every pending step of a finished episode bootstraps from its final obs
            c = int(self.count[e])
            rows = (self.k - c + np.arange(c)) % n
            r = self.rew[rows, e]
            for i in range(c):  # start at row rows[i]: h = c - i rewards
                h = c - i
                ret = self.powers[:h] @ r[i:]
                disc = 0.0 if step.terminated[e] else self.powers[h]
                parts.append(self._out(rows[i], np.array([e]), np.array([ret]), step.final_obs[e][None],
                                       np.array([disc]), True))
            self.count[e] = 0
        if len(parts) <= 1:
            return parts[0] if parts else None
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _out(self, row: int, envs: np.ndarray, ret, next_obs, disc, final: bool) -> dict[str, np.ndarray]:
        out = {"obs": self.obs[row, envs], "action": self.act[row, envs], "ret": ret.astype(np.float32),
               "next_obs": next_obs, "discount": disc.astype(np.float32), "env": envs.astype(np.int64),
               "final": np.full(len(envs), final)}
        for name, v in self.extras.items():
            out[name] = v[row, envs]
        return out
