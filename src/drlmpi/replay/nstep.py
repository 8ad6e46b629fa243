"""Build n-step transitions from a stream of vectorized env steps, a batch of starts at a time.

Each transition starting at step t of env e is
  (obs_t, action_t, R = sum_{k<h} gamma^k r_{t+k}, next_obs = obs_{t+h}, discount = gamma^h or 0),
with h = n, or fewer when the episode ends first: then next_obs is the episode's final obs, and
discount is 0 if it terminated or gamma^h if it was truncated (time limit: bootstrap from it).

Every env steps together, so the steps live in rings [W, E, ...] with W = batch + n rows. Once W
steps are in, the first `batch` starts are all decided (each has its n later steps, or its episode
ended), and leave together: the returns, horizons and episode ends of all batch x E starts are n
vectorized numpy passes over [batch, E] arrays, so the cost per step shrinks as `batch` grows
(an actor uses 16; DQN uses 1 to learn from each transition as early as possible). The last n rows
then move to the front. `flush()` emits every start whose n later steps are in. Transitions come
start-major (all envs' first start, then the second), or env-major (each env's starts together: what
compact frames want, see replay.frames).

Each transition also names its env (`env`), whether next_obs is an episode's final obs (`final`:
then it is not an obs the env acted on), and carries each per-step extra given to `push`
(e.g. the Q-value of the action taken) at its start (`x`) and at its next obs (`next_x`, 0 where
`final`), so an actor can compute initial priorities from the Q-values it computed when acting.
"""

import numpy as np

from drlmpi.envs import is_box


class NStepBuilder:
    def __init__(self, num_envs: int, n: int, gamma: float, batch: int = 1, env_major: bool = False):
        self.n, self.gamma, self.E, self.batch, self.env_major = n, gamma, num_envs, batch, env_major
        self.W = batch + n
        self.count = 0  # rows filled
        self.obs: np.ndarray | None = None  # [W, E, *obs_shape], allocated on the first push
        self.final_obs: np.ndarray | None = None  # [W, E, *obs_shape], rows valid where done
        self.act: np.ndarray | None = None  # [W, E, *action_shape]: int64 (discrete) or float32 (a box)
        self.rew = np.zeros((self.W, num_envs), np.float64)
        self.term = np.zeros((self.W, num_envs), bool)
        self.done = np.zeros((self.W, num_envs), bool)
        self.valid = np.ones((self.W, num_envs), bool)  # False: no transition (a failed env's step, envs.Restarting)
        self.dropped = 0  # rows dropped so far (a writer whose blocks must hold whole env blocks realigns on it)
        self.extras: dict[str, np.ndarray] = {}  # name -> [W, E]
        self.powers = gamma ** np.arange(n + 1)

    def push(self, obs: np.ndarray, actions: np.ndarray, step, **extras: np.ndarray) -> dict[str, np.ndarray] | None:
        """Add one vector step (obs [E, ...] that acted, actions [E] or [E, A], env.Step, extras [E] each).

        Returns the transitions that became complete (obs, action, ret, next_obs, discount, env, final,
        and x, next_x per extra; each [B, ...]), or None.
        """
        i = self.count
        if self.obs is None:
            self.obs = np.zeros((self.W, *obs.shape), obs.dtype)
            self.final_obs = np.zeros((self.W, *obs.shape), obs.dtype)
            actions = np.asarray(actions)
            self.act = np.zeros((self.W, *actions.shape), np.float32 if actions.dtype.kind == "f" else np.int64)
        for name, v in extras.items():
            if name not in self.extras:
                self.extras[name] = np.zeros((self.W, self.E), np.asarray(v).dtype)
            self.extras[name][i] = v
        self.obs[i], self.act[i], self.rew[i] = obs, actions, step.reward
        done = step.done
        self.term[i], self.done[i] = step.terminated, done
        if done.any():
            self.final_obs[i, done] = step.final_obs[done]
        self.valid[i] = True
        if step.restarted is not None:
            self._cut(i, step.restarted)
        self.count += 1
        return self._emit(self.batch) if self.count == self.W else None

    def _cut(self, i: int, envs: np.ndarray) -> None:
        """Row i of `envs` [E] bool is no transition (their envs failed and were rebuilt): it is never emitted, and
        their episodes end at the row before, truncated at row i's obs (the obs that acted)."""
        self.valid[i, envs] = False
        if i:
            cut = envs & ~self.done[i - 1]
            self.final_obs[i - 1, cut] = self.obs[i, cut]
            self.done[i - 1, cut] = True  # (term stays False: a cut, bootstrapped from that obs)

    def flush(self) -> dict[str, np.ndarray] | None:
        """Emit every start whose n later steps are in (those of a still-running episode keep waiting)."""
        return self._emit(self.count - self.n) if self.count > self.n else None

    def _emit(self, m: int) -> dict[str, np.ndarray]:
        """Emit the starts in rows [0, m) (each has n later rows), then move the rest to the front."""
        n, E = self.n, self.E
        ret = np.zeros((m, E))
        h = np.zeros((m, E), np.int64)
        alive = np.ones((m, E), bool)
        end_row = np.zeros((m, E), np.int64)
        term = np.zeros((m, E), bool)
        rows = np.arange(m)[:, None]
        for k in range(n):  # step t + k of start t, for all starts at once
            ret += np.where(alive, self.powers[k] * self.rew[k : k + m], 0.0)
            h += alive
            ends = alive & self.done[k : k + m]
            end_row = np.where(ends, rows + k, end_row)
            term |= ends & self.term[k : k + m]
            alive &= ~self.done[k : k + m]
        final = ~alive
        envs = np.broadcast_to(np.arange(E), (m, E))
        next_obs = self.obs[n : n + m].copy()
        if final.any():
            next_obs[final] = self.final_obs[end_row[final], envs[final]]

        def rows(a: np.ndarray) -> np.ndarray:  # [m, E, ...] -> [m * E, ...], a copy
            a = np.array(a.swapaxes(0, 1) if self.env_major else a, order="C")  # never a view of the rings
            return a.reshape(m * E, *a.shape[2:])

        out = {"obs": rows(self.obs[:m]), "action": rows(self.act[:m]), "ret": rows(ret.astype(np.float32)),
               "next_obs": rows(next_obs), "discount": rows(np.where(term, 0.0, self.powers[h]).astype(np.float32)),
               "env": rows(envs), "final": rows(final)}
        for name, v in self.extras.items():
            out[name] = rows(v[:m])
            out["next_" + name] = rows(np.where(final, 0, v[n : n + m]))
        if not self.valid[:m].all():  # (rare: a failed env's steps are no transitions)
            keep_rows = rows(self.valid[:m])
            out = {k: v[keep_rows] for k, v in out.items()}
            self.dropped += int((~keep_rows).sum())
        keep = self.count - m  # rows m .. count-1 move to the front
        for a in (self.obs, self.final_obs, self.act, self.rew, self.term, self.done, self.valid,
                  *self.extras.values()):
            a[:keep] = a[m : self.count]
        self.count = keep
        return out


def transition_fields(obs_space, act_space=None) -> dict:
    """The replay fields of an n-step transition: name -> (shape, dtype); frames keep their dtype (uint8); actions
    are int64 (discrete, or no act_space) or float32 [A] (a gymnasium Box)."""
    action = ((), np.int64) if act_space is None or not is_box(act_space) else (act_space.shape, np.float32)
    return {"obs": (obs_space.shape, obs_space.dtype), "next_obs": (obs_space.shape, obs_space.dtype),
            "action": action, "ret": ((), np.float32), "discount": ((), np.float32)}
