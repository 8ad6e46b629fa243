"""What the actor-critic algorithms (A2C, A3C, IMPALA, GA3C, SEED) share, written once.

  ACConfig, UnrollBatch, PolicyLag, VTraceClip, Surrogate, require_discrete, UnrollPlanes
                  the configuration and planes, from drlmpi.ac_config (no torch there: what a rank with no model
                  imports)
  build_net, load_policy
                  the actor-critic network (MLP or convolutional torso; a categorical policy's logits, or a
                  Gaussian's means for Box actions, and the value) and the greedy policy of a checkpoint (the most
                  probable action, or the mean clipped to the box)
  behaviour_field, policy_terms, behaviour_log_prob
                  the acting policy an unroll carries (logits, or the log-probability of a continuous action), and
                  the learner's log-probabilities and entropies (ops.policy)
  TorchPolicy, collect
                  acting.unroll's policy on the torch network, and one on-policy unroll [n_steps, E] with its
                  current weights (acting: the same without torch, for an actor that only acts)
  nstep_loss      the n-step advantage actor-critic loss of an unroll (A2C, A3C)
  forward_unrolls a learner's forward over a batch of unrolls [T + 1, N], with the recurrent state at each
                  unroll's start when the net has a core (each algorithm's `learn` takes it from there)
  learner_parts   an unroll learner's declared state: the network and RMSProp (IMPALA, GA3C, SEED)
  loss_row        the metrics of an update's losses
  run_unroll_learner
                  the learner of unrolls from the trajectory plane (IMPALA, GA3C), around its algorithm's `learn`
Central inference (GA3C, SEED) is in drlmpi.central.
"""

import numpy as np
import torch

from drlmpi import nets
from drlmpi.ac_config import (  # noqa: F401 (re-exported: the family's names in one place)
    ACConfig,
    PolicyLag,
    Surrogate,
    UnrollBatch,
    UnrollPlanes,
    VTraceClip,
    require_discrete,
)
from drlmpi.acting import behaviour_field, restarted_bootstrap, unroll  # noqa: F401 (re-exported)
from drlmpi.comm.allreduce import GradAllreduce, learners_step
from drlmpi.envs import env_actions, is_box
from drlmpi.errors import invariant
from drlmpi.learner import Learner, Parts
from drlmpi.nets import ActorCritic, flat_params, load_arrays, load_flat
from drlmpi.nets.optim import RMSprop
from drlmpi.ops import policy as pi
from drlmpi.ops import vtrace
from drlmpi.ops.actor_critic import Losses, actor_critic_loss


def build_net(cfg: ACConfig, obs_space, act_space) -> ActorCritic:
    """Categorical for Discrete actions, a Gaussian (nets.ActorCritic's log_std) for a 1-D Box."""
    continuous = is_box(act_space)
    return ActorCritic(obs_space.shape, act_space.shape[0] if continuous else act_space.n, cfg.hidden,
                       getattr(cfg, "lstm", 0), continuous=continuous, separate=cfg.separate_value,
                       activation=cfg.activation, orthogonal=cfg.orthogonal_init)


def initial_net(cfg: ACConfig, obs_space, act_space) -> ActorCritic:
    """The run's initial network: torch seeded with cfg.seed, then build_net (the same on every rank that builds
    it)."""
    torch.manual_seed(cfg.seed)
    return build_net(cfg, obs_space, act_space)


def policy_terms(net: ActorCritic, head: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi(action | x) [T, B], H(pi(. | x)) [T, B]) of the net's policy head [T, B, A]."""
    return pi.log_prob(head, action, net.log_std), pi.entropy(head, net.log_std)


def behaviour_log_prob(b: dict, T: int) -> torch.Tensor:
    """log mu(a | x) [T, N] of the acting policy, from an unroll batch's `log_prob` or `logits` (behaviour_field)."""
    if "log_prob" in b:
        return b["log_prob"][:T]
    return pi.log_prob(b["logits"][:T], b["action"][:T])


def load_policy(cfg: ACConfig, weights: dict, env):
    """Greedy policy obs [E, ...] -> actions [E] (the most probable action, or the Gaussian's mean clipped to the
    action box) from checkpoint weights; with an LSTM core it carries its state, which `policy.reset(done [E])`
    zeroes where episodes ended."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    net.eval()
    state = [net.initial_state(env.num_envs)]
    to_env = env_actions(env.action_space)

    def policy(obs):
        with torch.no_grad():
            head, _, state[0] = net(torch.as_tensor(obs)[None], state[0])
            return to_env(pi.mode(head[0], net.log_std).numpy())

    def reset(done: np.ndarray):
        keep = torch.as_tensor(~done, dtype=torch.float32).unsqueeze(1)
        state[0] = tuple(s * keep for s in state[0])

    policy.reset = reset
    return policy


class TorchPolicy:
    """acting.unroll's policy on a torch network without a core (A2C's and A3C's workers; an IMPALA or APPO actor on
    images): act(obs [E, ...]) -> (action sampled with torch's generator, {"logits": [E, A]} or {"log_prob": [E]});
    value(obs [k, ...]) -> [k]; load(flat [n])."""

    def __init__(self, net: ActorCritic):
        invariant(net.core is None, "TorchPolicy acts without a recurrent state: no LSTM core")
        self.net = net

    def load(self, flat: np.ndarray) -> None:
        load_flat(self.net, flat)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict]:
        head = self.net(torch.as_tensor(obs)[None])[0][0]
        action = pi.sample(head, self.net.log_std)
        if self.net.log_std is None:
            return action.numpy(), {"logits": head.numpy()}
        return action.numpy(), {"log_prob": pi.log_prob(head, action, self.net.log_std).numpy()}

    @torch.no_grad()
    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.net(torch.as_tensor(obs)[None])[1][0].numpy()


def collect(net, env, obs: np.ndarray, cfg: ACConfig, clip_reward: bool, episodes: list, out: dict | None = None
            ) -> tuple[dict, np.ndarray]:
    """acting.unroll with the torch network's current weights (TorchPolicy)."""
    return unroll(TorchPolicy(net), env, obs, cfg, clip_reward, episodes, out)


def nstep_loss(net, u: dict, last_obs: np.ndarray, cfg: ACConfig) -> Losses:
    """The n-step advantage actor-critic loss of an unroll (V-trace with log rhos 0: the bootstrapped returns)."""
    head, values, _ = net(torch.as_tensor(u["obs"]))
    with torch.no_grad():
        bootstrap = net(torch.as_tensor(last_obs)[None])[1][0]
    discounts, rewards = torch.as_tensor(u["discount"]), torch.as_tensor(u["reward"])
    ret = vtrace.from_importance_weights(torch.zeros_like(rewards), discounts, rewards, values.detach(), bootstrap)
    return actor_critic_loss(*policy_terms(net, head, torch.as_tensor(u["action"])), values, ret.vs,
                             ret.pg_advantages, cfg.baseline_cost, cfg.entropy_cost)




def forward_unrolls(net, batch: dict, T: int, device) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """A learner's forward over a batch of unrolls {field: [T + 1, N, ...]} (row T: the bootstrap observation;
    `h0`, `c0` [1, N, H]: the recurrent state entering row 0, whose reset is already applied): (the batch as
    tensors, logits [T + 1, N, A], values [T + 1, N])."""
    b = {k: torch.as_tensor(v, device=device) for k, v in batch.items()}
    state, reset = (), None
    if "h0" in b:
        state = (b["h0"][0], b["c0"][0])
        reset = torch.zeros(b["discount"].shape, dtype=torch.bool, device=device)
        reset[1:] = b["discount"][:T] == 0  # step t + 1 starts an episode where step t ended one
    logits, values, _ = net(b["obs"], state, reset)
    return b, logits, values


def learner_parts(cfg: ACConfig, net: torch.nn.Module) -> Parts:
    """An unroll learner's declared state (IMPALA, GA3C, SEED): the network and its RMSProp."""
    return Parts({"online": net}, {"rmsprop": RMSprop(net.parameters(), lr=cfg.lr, alpha=0.99, eps=1e-5)})


LOSS_COLUMNS = ["loss", "pg_loss", "baseline_loss", "entropy"]


def loss_row(losses: Losses | None) -> dict:
    """The metrics of an update's losses (NaN before the first)."""
    names = ("total", "pg", "baseline", "entropy")
    return {c: float(getattr(losses, k).detach()) if losses else float("nan") for c, k in zip(LOSS_COLUMNS, names)}


def run_unroll_learner(rt, cfg, planes, resumed, algo: str, learn, sources: list[int], split=None) -> dict:
    """The learner of unrolls (IMPALA, GA3C, APPO): batches of `batch_size` unrolls from its share of `sources` (the
    ranks that send them) -> learn(net, batch, cfg, device) -> Losses -> backward -> one allreduce of every
    learner's gradients (comm.allreduce.learners_step: the mean over the learners that had a batch, clipping, the
    lr, the step) -> the lead publishes every `publish_every` updates, logs and checkpoints; until no learner has a
    batch (every source has stopped). `max_policy_lag` drops stale unrolls (counted). split(batch) -> the
    minibatches a batch is learnt from, one update each (APPO's passes), and for None as many Nones (a learner
    without a batch joins every allreduce); None: the batch in one update."""
    learners = rt.role_comm
    device = nets.device(cfg.device)
    parts = learner_parts(cfg, planes.net.to(device))
    net, opt = parts.nets["online"], parts.optims["rmsprop"]
    learner = Learner(rt, cfg, algo, parts, [*LOSS_COLUMNS, "dropped_unrolls", "learners"], resumed)
    allreduce = GradAllreduce(learners, list(net.parameters()), cfg.allreduce, extra=3)  # progress, had, dropped

    def publish():
        planes.weights.publish(flat_params(net), learner.updates)

    if learner.lead:
        publish()
    reader = planes.trajectories.reader([a for k, a in enumerate(sources) if k % learners.size == learners.rank],
                                        cfg.batch_size, cfg.max_policy_lag)
    last = {"losses": None, "dropped": 0}

    def row():
        return {**loss_row(last["losses"]), "dropped_unrolls": last["dropped"], "learners": learners.size}

    def update(batch) -> bool:  # one step on a batch (or on none); False when no learner had one
        opt.zero_grad(set_to_none=True)
        if batch is not None:
            last["losses"] = learn(net, batch, cfg, device)
            last["losses"].total.backward()
        dropped = learners_step(net, opt, allreduce, learner.progress, batch is not None, reader.dropped, cfg)
        if dropped is None:
            return False  # no learner has a batch: every source has stopped
        learner.updates += 1
        last["dropped"] = int(dropped)
        if learner.lead and learner.updates % cfg.publish_every == 0:
            publish()
        learner.checkpoint()
        learner.poll(row)
        return True

    while True:
        batch = reader.receive(learner.updates, on_idle=lambda: learner.poll(row))
        if not all(update(mb) for mb in (split(batch) if split else [batch])):
            break
    return learner.finish(row, reader, allreduce, final=publish)
