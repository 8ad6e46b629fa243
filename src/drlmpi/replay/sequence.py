"""Fixed-length sequences for recurrent replay (R2D2, R2D3), built from a stream of vectorized env steps.

A sequence of env e holds up to L = seq_len steps of one episode:
  obs [L + 1, ...]   the observations acted on, then the one after the last step (an episode's final obs where it
                     ended: a truncated episode bootstraps from it); image observations (uint8 [C, 84, 84] stacks)
                     are stored compactly as `frames` [L + C, 84, 84] instead, each frame once (`unstack`)
  action [L], reward [L]
  discount [L]       gamma, or 0 where the step terminated its episode
  valid [L]          1 on the steps taken, 0 on the padding after an episode's end (a prefix of ones)
  burn [] int64      steps at the start only used to warm the recurrent state: 0 for a sequence that starts an
                     episode (its stored state, zero, is exact), else `burn_in`
  state [2, H]       the recurrent state (h, c) the actor acted from at the sequence's first step

A sequence ends when it holds L steps, or when its episode ends (then padded). After a full one, the next starts
`L - overlap` steps into it, so consecutive sequences share `overlap` steps. Sequences never cross episodes. One
whose steps all fall within its burn-in (an episode's end soon after an overlap) has nothing to learn from and is
not emitted.
"""

import numpy as np


def sequence_fields(obs_space, seq_len: int, hidden: int) -> dict:
    """The replay fields of a sequence: name -> (shape, dtype)."""
    shape, dtype = obs_space.shape, obs_space.dtype
    obs = ({"frames": ((seq_len + shape[0], *shape[1:]), np.uint8)} if is_stack(shape, dtype)
           else {"obs": ((seq_len + 1, *shape), dtype)})
    return {**obs, "action": ((seq_len,), np.int64), "reward": ((seq_len,), np.float32),
            "discount": ((seq_len,), np.float32), "valid": ((seq_len,), np.float32), "burn": ((), np.int64),
            "state": ((2, hidden), np.float32)}


def is_stack(shape: tuple[int, ...], dtype) -> bool:
    """A frame stack [C, H, W] of uint8 (Atari): stored as frames."""
    return len(shape) == 3 and np.dtype(dtype) == np.uint8


def unstack(frames, channels: int):
    """frames [B, L + C, H, W] -> stacks [B, L + 1, C, H, W]: stack t is frames t .. t + C - 1 (a view, torch or
    numpy)."""
    if hasattr(frames, "unfold"):
        return frames.unfold(1, channels, 1).movedim(-1, 2)
    return np.lib.stride_tricks.sliding_window_view(frames, channels, axis=1).transpose(0, 1, 4, 2, 3)


class SequenceBuilder:
    """Per-env sequences from vector steps; `push` returns the completed ones (rows match `sequence_fields`)."""

    def __init__(self, num_envs: int, seq_len: int, overlap: int, burn_in: int, gamma: float, obs_space,
                 hidden: int):
        assert 0 <= overlap < seq_len and 0 <= burn_in < seq_len, "0 <= overlap, burn_in < seq_len"
        self.E, self.L, self.overlap, self.burn_in, self.gamma = num_envs, seq_len, overlap, burn_in, gamma
        self.fields = sequence_fields(obs_space, seq_len, hidden)
        self.frames = "frames" in self.fields
        self.C = obs_space.shape[0] if self.frames else 0
        self.buf = {k: np.zeros((num_envs, *shape), dtype) for k, (shape, dtype) in self.fields.items()}
        self.states = np.zeros((num_envs, seq_len, 2, hidden), np.float32)  # the state at each step
        self.len = np.zeros(num_envs, np.int64)  # steps in each env's current sequence
        self.first = np.ones(num_envs, bool)  # whether it starts an episode
        self.rows: list[dict[str, np.ndarray]] = []
        self.dropped = 0  # (the builder protocol's: a sequence is never split into blocks, so none is dropped)

    def _put_obs(self, e: int, j: int, obs: np.ndarray) -> None:
        """Observation position j of env e's sequence (a stack: only its newest frame, after position 0)."""
        if not self.frames:
            self.buf["obs"][e, j] = obs
        elif j == 0:
            self.buf["frames"][e, : self.C] = obs
        else:
            if not np.array_equal(obs[:-1], self.buf["frames"][e, j : j + self.C - 1]):
                raise ValueError("frame stacks must shift by one frame per step within an episode")
            self.buf["frames"][e, j + self.C - 1] = obs[-1]

    def push(self, obs: np.ndarray, actions: np.ndarray, step, state: np.ndarray) -> dict[str, np.ndarray] | None:
        """Add one vector step: obs [E, ...] acted on, actions [E], its env.Step, state [E, 2, H] acted from.
        Returns the sequences it completed (fields [n, ...]), or None."""
        b, done, failed = self.buf, step.done, step.restarted
        for e in range(self.E):
            if failed is not None and failed[e]:  # no transition: its sequence ends, bootstrapped from its last obs
                if self.len[e]:
                    self._emit(e, continues=False)
                self.first[e] = True  # (the next sequence starts an episode)
                continue
            j = int(self.len[e])
            if j == 0:
                self._put_obs(e, 0, obs[e])  # (later positions were written as the previous step's next obs)
            self.states[e, j] = state[e]
            b["action"][e, j], b["reward"][e, j] = actions[e], step.reward[e]
            b["discount"][e, j] = 0.0 if step.terminated[e] else self.gamma
            b["valid"][e, j] = 1.0
            self.len[e] = j + 1
            self._put_obs(e, j + 1, step.final_obs[e] if done[e] else step.obs[e])
            if done[e] or j + 1 == self.L:
                self._emit(e, continues=not done[e])
        return self._collect()

    def flush(self) -> dict[str, np.ndarray] | None:
        """Emit every unfinished sequence (it bootstraps from its last obs)."""
        for e in np.flatnonzero(self.len):
            self._emit(int(e), continues=False)
        return self._collect()

    def _emit(self, e: int, continues: bool) -> None:
        """Copy env e's sequence out; then start its next one `overlap` steps before the end if its episode
        continues, else empty."""
        b = self.buf
        b["state"][e] = self.states[e, 0]
        b["burn"][e] = 0 if self.first[e] else self.burn_in
        if self.len[e] > b["burn"][e]:  # else it has no step to learn from: not stored
            self.rows.append({k: v[e].copy() for k, v in b.items()})
        keep = self.overlap if continues else 0
        s = self.L - keep  # the step the next sequence starts at
        for k, v in b.items():
            if k in ("burn", "state"):
                continue
            if not continues:
                v[e] = 0
                continue
            n = keep + (self.C if k == "frames" else 1 if k == "obs" else 0)  # obs fields: + the next obs
            v[e, :n] = v[e, s : s + n]
            v[e, n:] = 0
        self.states[e, :keep] = self.states[e, s : s + keep]
        self.len[e] = keep
        self.first[e] = not continues

    def _collect(self) -> dict[str, np.ndarray] | None:
        if not self.rows:
            return None
        out = {k: np.stack([r[k] for r in self.rows]) for k in self.fields}
        self.rows.clear()
        return out
