"""An actor's initial priority of an n-step transition, from the Q-values it computed when acting (numpy: an actor
that acts without torch imports this)."""

import numpy as np


def actor_priority(tr: dict, q_fn, eps: float = 1e-6) -> np.ndarray:
    """|R + discount * max_a Q(next_obs, a) - Q(obs, action)| + eps, float64 [B], from the actor's own Q-values.

    tr: n-step transitions from NStepBuilder with extras "q_taken" (Q of the action taken) and "v"
    (max_a Q), recorded when acting: next_v is the bootstrap, except where next_obs is an episode's
    final obs (`final`): terminated ones do not bootstrap, truncated ones are evaluated with
    q_fn(obs [k, ...]) -> [k, A]. No forward pass in the common case (Ape-X).
    """
    boot = tr["next_v"].astype(np.float64)
    redo = tr["final"] & (tr["discount"] > 0)
    if redo.any():
        boot[redo] = q_fn(tr["next_obs"][redo]).max(axis=1)
    return np.abs(tr["ret"] + tr["discount"] * boot - tr["q_taken"]) + eps
