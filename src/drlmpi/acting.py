"""Acting without torch, written once: an actor that only acts on vector observations (IMPALA's, APPO's, Ape-X's)
runs its network in numpy and never imports torch (about 130 MiB less a rank, BENCHMARKS: memory per rank); GORILA's
acts the same way but its module imports torch. One that needs torch (images; A2C's and A3C's workers, which also
compute gradients) acts through actor_critic.TorchPolicy or value_config.TorchQ, the same interfaces.

  unroll          one on-policy unroll [n_steps, E] from a policy (act, value, load) and a vector env
  behaviour_field the unroll fields of the acting policy (logits, or a Gaussian action's log-probability)
  restarted_bootstrap
                  the factor of V(final obs) in a cut episode's reward
  MLPActorCritic  nets.ActorCritic without a core, in numpy, read from the weights plane's flat vector
  MLPQNetwork     nets.QNetwork on vector observations, the same way (Ape-X's and GORILA's actors)
  NumpyPolicy     its sampling: categorical from logits, or the Gaussian of its means and log_std
  actor_policy    the policy an unroll actor acts with: numpy's where it can (acts_without_torch), else torch's
  param_count     the network's number of parameters (the weights plane's length), torch-free where it can
"""

import math

import numpy as np

from drlmpi.envs import env_actions, is_box
from drlmpi.errors import invariant

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0.0, out=x), "tanh": lambda x: np.tanh(x, out=x)}


def unroll(policy, env, obs: np.ndarray, cfg, clip_reward: bool, episodes: list, out: dict | None = None
           ) -> tuple[dict, np.ndarray]:
    """One unroll [n_steps, E] with the policy's current weights: obs, action ([n_steps, E] or [n_steps, E, A] for a
    Gaussian's, unclipped; the env gets them clipped to its box), reward (clipped to [-1, 1] if clip_reward),
    discount (gamma, 0 after a termination), and the acting policy where `out` has its field (logits
    [n_steps, E, A] or log_prob [n_steps, E], what policy.act returns beside the action); a truncated episode's
    reward gets gamma V(final obs) and discount 0. Fills `out` (field views with at least n_steps rows, e.g. an
    unroll slot) or new arrays. Returns (unroll, next obs); finished episodes' returns go to `episodes`."""
    T, E = cfg.n_steps, env.num_envs
    shape, dtype = behaviour_field(E, env.action_space)["action"]
    u = out if out is not None else {
        "obs": np.empty((T, *obs.shape), obs.dtype), "action": np.empty((T, *shape), dtype),
        "reward": np.empty((T, E), np.float32), "discount": np.empty((T, E), np.float32)}
    to_env = env_actions(env.action_space)
    for t in range(T):
        u["obs"][t] = obs
        action, behaviour = policy.act(obs)
        for k, v in behaviour.items():
            if k in u:
                u[k][t] = v
        step = env.step(to_env(action))
        reward = np.clip(step.reward, -1, 1) if clip_reward else step.reward
        cut = step.truncated & ~step.terminated
        if cut.any():  # bootstrap a time limit: it is not the end of the task
            reward = reward.copy()
            reward[cut] += restarted_bootstrap(step, cut, cfg.gamma) * policy.value(step.final_obs[cut])
        u["action"][t], u["reward"][t] = action, reward
        u["discount"][t] = cfg.gamma * ~step.done
        episodes += [ret for ret, _ in step.episodes]
        obs = step.obs
    return u, obs


def behaviour_field(E: int, act_space) -> dict:
    """The unroll fields of the acting policy and its actions: {name: ((E, ...), dtype)}; logits [E, A] for
    categorical actions, the log-probability [E] of each Gaussian action [E, A]."""
    if is_box(act_space):
        return {"action": ((E, act_space.shape[0]), np.float32), "log_prob": ((E,), np.float32)}
    return {"action": ((E,), np.int64), "logits": ((E, act_space.n), np.float32)}


def restarted_bootstrap(step, cut: np.ndarray, gamma: float) -> np.ndarray:
    """The factor of V(final obs) in the reward of each cut env [cut.sum()]: gamma for a time limit; 1 for an env that
    failed (envs.Restarting): its step did not happen, so its return is V of the obs that acted and its advantage
    about 0 (the slot must be filled in a fixed-size unroll, but it teaches nothing)."""
    if step.restarted is None:
        return np.full(int(cut.sum()), gamma, np.float32)
    return np.where(step.restarted[cut], 1.0, gamma).astype(np.float32)


def acts_without_torch(cfg, obs_shape: tuple[int, ...]) -> bool:
    """Whether MLPActorCritic is cfg's network: vector observations (an MLP torso) and no LSTM core."""
    return len(obs_shape) != 3 and not getattr(cfg, "lstm", 0)


def layer_shapes(in_dim: int, hidden: tuple[int, ...]) -> list[tuple[int, ...]]:
    """An MLP's (weight [out, in], bias [out]) shapes, layer after layer."""
    shapes, d = [], in_dim
    for h in hidden:
        shapes += [(h, d), (h,)]
        d = h
    return shapes


def unflatten(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """A copy of the flat parameter vector [n] (the caller's buffer is rewritten by its next read), cut into arrays
    of these shapes; ValueError when n is not their total."""
    sizes = [math.prod(s) for s in shapes]
    if len(flat) != sum(sizes):
        raise ValueError(f"{len(flat)} weights for a network of {sum(sizes)}")
    flat = np.array(flat, dtype=np.float32)
    offsets = np.cumsum([0, *sizes])
    return [flat[a:b].reshape(s) for a, b, s in zip(offsets[:-1], offsets[1:], shapes)]


def mlp(x: np.ndarray, params: list[np.ndarray], activation) -> np.ndarray:
    """nets.MLP's forward: x [E, D] through (weight [out, in], bias [out]) pairs, the activation after each."""
    for w, b in zip(params[0::2], params[1::2]):
        x = activation(x @ w.T + b)
    return x


class MLPActorCritic:
    """nets.ActorCritic(obs_shape, A, hidden, continuous=, separate=, activation=) without a core, in numpy float32.

    Its parameters are the torch network's in nets.flat_params's order (the root module's own first: log_std when
    continuous; then its submodules' as registered: torso, value torso when separate, policy head, value head), so
    `load(flat [n])` takes the weights plane's vector. __call__(obs [E, *obs_shape]) -> (head [E, A] logits or
    means, value [E])."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: tuple[int, ...], *, continuous: bool = False,
                 separate: bool = False, activation: str = "relu"):
        d = hidden[-1] if hidden else obs_dim
        torso = layer_shapes(obs_dim, hidden)
        heads = [(num_actions, d), (num_actions,), (1, d), (1,)]
        self.shapes = ([(num_actions,)] if continuous else []) + torso + (torso if separate else []) + heads
        self.n = sum(math.prod(s) for s in self.shapes)
        self.depth, self.separate, self.continuous = len(torso), separate, continuous
        self.activation = ACTIVATIONS[activation]
        self.params: list[np.ndarray] = []

    @classmethod
    def of(cls, cfg, obs_space, act_space) -> "MLPActorCritic":
        """actor_critic.build_net's network for these spaces, in numpy."""
        continuous = is_box(act_space)
        return cls(int(np.prod(obs_space.shape)), act_space.shape[0] if continuous else act_space.n, tuple(cfg.hidden),
                   continuous=continuous, separate=cfg.separate_value, activation=cfg.activation)

    def load(self, flat: np.ndarray) -> None:
        self.params = unflatten(flat, self.shapes)

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = obs.reshape(len(obs), -1).astype(np.float32, copy=False)
        p, k = self.params[self.continuous:], self.depth
        h = mlp(x, p[:k], self.activation)
        hv = mlp(x, p[k:2 * k], self.activation) if self.separate else h
        pw, pb, vw, vb = p[2 * k:2 * k + 4] if self.separate else p[k:k + 4]
        return h @ pw.T + pb, (hv @ vw.T + vb)[:, 0]

    @property
    def log_std(self) -> np.ndarray | None:
        return self.params[0] if self.continuous else None


class MLPQNetwork:
    """nets.QNetwork(obs_shape, A, hidden, dueling) on vector observations, in numpy float32, from the flat
    parameter vector (torso, then the value and advantage heads, or the Q head): load(flat [n]);
    __call__(obs [E, *obs_shape]) -> Q [E, A] (dueling: V + A - mean(A)). What value_config.EpsilonGreedyQ takes."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: tuple[int, ...], dueling: bool = True):
        d = hidden[-1] if hidden else obs_dim
        heads = [(1, d), (1,), (num_actions, d), (num_actions,)] if dueling else [(num_actions, d), (num_actions,)]
        self.shapes = layer_shapes(obs_dim, hidden) + heads
        self.n = sum(math.prod(s) for s in self.shapes)
        self.depth, self.dueling = 2 * len(hidden), dueling
        self.params: list[np.ndarray] = []

    def load(self, flat: np.ndarray) -> None:
        self.params = unflatten(flat, self.shapes)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        p, k = self.params, self.depth
        h = mlp(obs.reshape(len(obs), -1).astype(np.float32, copy=False), p[:k], ACTIVATIONS["relu"])
        if not self.dueling:
            return h @ p[k].T + p[k + 1]
        adv = h @ p[k + 2].T + p[k + 3]
        return (h @ p[k].T + p[k + 1]) + adv - adv.mean(1, keepdims=True)


class NumpyPolicy:
    """What `unroll` takes, on an MLPActorCritic: act(obs [E, D]) -> (action int64 [E] sampled from the logits, or
    float32 [E, A] from the Gaussian, {"logits": [E, A]} or {"log_prob": [E]}); value(obs [k, D]) -> [k];
    load(flat [n]). Samples with its own numpy generator (seeded from the rank's)."""

    def __init__(self, net: MLPActorCritic, gen: np.random.Generator):
        self.net, self.gen = net, gen

    def load(self, flat: np.ndarray) -> None:
        self.net.load(flat)

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict]:
        head, _ = self.net(obs)
        log_std = self.net.log_std
        if log_std is None:
            return categorical(head, self.gen), {"logits": head}
        action = head + np.exp(log_std) * self.gen.standard_normal(head.shape, dtype=np.float32)
        return action, {"log_prob": gaussian_log_prob(head, action, log_std)}

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.net(obs)[1]


def categorical(logits: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """A sample of softmax(logits [E, A]) per row: int64 [E] (the inverse of each row's CDF at a uniform)."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    cdf = np.cumsum(p, 1)
    u = gen.random((len(logits), 1)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(1), logits.shape[1] - 1).astype(np.int64)


def gaussian_log_prob(mean: np.ndarray, action: np.ndarray, log_std: np.ndarray) -> np.ndarray:
    """log N(action; mean, exp(log_std)^2), summed over the action's dimensions: [E, A] -> [E] (ops.policy's)."""
    z = (action - mean) * np.exp(-log_std)
    return (-0.5 * z * z - log_std - HALF_LOG_2PI).sum(-1).astype(np.float32)


def actor_policy(rt, cfg, obs_space, act_space, net=None):
    """The policy an unroll actor (IMPALA's, APPO's) acts with, weights to be loaded: actor_critic.TorchPolicy on
    `net`, the torch network its setup built (not acts_without_torch: images), else NumpyPolicy (no torch imported)."""
    if net is not None:
        from drlmpi.actor_critic import TorchPolicy

        return TorchPolicy(net.requires_grad_(False))
    return NumpyPolicy(MLPActorCritic.of(cfg, obs_space, act_space), np.random.default_rng(rt.gen.integers(2**63)))



def param_count(cfg, obs_space, act_space, net=None) -> int:
    """The actor-critic network's number of parameters (the weights plane's length): the torch network's where this
    rank built it, checked against MLPActorCritic's where the actors act with that; else MLPActorCritic's (no
    torch)."""
    numpy_n = MLPActorCritic.of(cfg, obs_space, act_space).n if acts_without_torch(cfg, obs_space.shape) else None
    if net is None:
        invariant(numpy_n is not None, "param_count: no network built for observations an actor cannot act on in numpy")
        return numpy_n
    n = sum(p.numel() for p in net.parameters())
    invariant(numpy_n in (None, n), f"acting.MLPActorCritic has {numpy_n} parameters, the torch network {n}")
    return n
