"""Build n-step transitions from a stream of vectorized env steps.

For each of E envs, the last n (obs, action, reward) wait until n rewards are
known, then leave as one transition
  (obs_t, action_t, R = sum_{k<h} gamma^k r_{t+k}, next_obs = obs_{t+h}, discount = gamma^h or 0),
with h = n, or fewer when the episode ends first. discount is 0 when the episode
terminated and gamma^h when it was truncated (time limit: bootstrap from the last obs).
"""

from collections import deque

import numpy as np

from drlmpi.ops.nstep import discounted_sum


class NStepBuilder:
    def __init__(self, num_envs: int, n: int, gamma: float):
        self.n, self.gamma = n, gamma
        self.pending = [deque() for _ in range(num_envs)]  # per env: (obs, action, reward)

    def push(self, obs: np.ndarray, actions: np.ndarray, step) -> dict[str, np.ndarray] | None:
        """Add one vector step (obs [E, ...] that acted, actions [E], env.Step); return finished transitions."""
        out = []
        done = step.done
        for e, q in enumerate(self.pending):
            q.append((obs[e], actions[e], step.reward[e]))
            nxt = step.final_obs[e] if done[e] else step.obs[e]
            if len(q) == self.n:
                out.append(self._emit(q, nxt, step.terminated[e]))
                q.popleft()
            if done[e]:
                while q:
                    out.append(self._emit(q, nxt, step.terminated[e]))
                    q.popleft()
        if not out:
            return None
        obs_, act, ret, nxt, disc = zip(*out)
        return {"obs": np.stack(obs_), "action": np.array(act, dtype=np.int64),
                "ret": np.array(ret, dtype=np.float32), "next_obs": np.stack(nxt),
                "discount": np.array(disc, dtype=np.float32)}

    def _emit(self, q, next_obs, terminated):
        h = len(q)
        ret = discounted_sum(np.array([r for _, _, r in q], dtype=np.float64), self.gamma)
        disc = 0.0 if terminated else self.gamma**h
        return q[0][0], q[0][1], float(ret), next_obs, disc
