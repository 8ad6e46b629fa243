"""R2D2: recurrent replay distributed DQN (Kapturowski et al., 2019): Ape-X with an LSTM and stored sequences.

Roles as Ape-X's: `learner`s (the first leads), `replay` shards, `actor`s on the other ranks.
  actor i   the replay actor loop (replay.actor) with Ape-X's epsilon_i = eps^(1 + alpha i / (N - 1)), acting on the
            recurrent Q-network with a state per env (zeroed at episode ends); it cuts each env's stream into
            sequences of `seq_len` steps, consecutive ones sharing `seq_overlap` steps, stored with the state they
            started from (replay.sequence), with initial priorities from its own network's TD errors.
  replay    the Ape-X shard role: a row is a sequence; sampling is globally correct over shards as for transitions.
  learner   vb.run_learner with this file's `learn`: from each sequence's stored state, `burn_in` steps only warm the
            state (no gradient through them; none for a sequence that starts its episode, as its zero state is
            exact), then n-step double Q-learning with a target network on the rest, in value-rescaled space
            (h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x; rewards are not clipped). New priorities are
            eta max_t |td| + (1 - eta) mean_t |td|. Several learners allreduce gradients.
Defaults are CartPole-sized (seq_len 20, burn-in and overlap 10); `Config.ATARI` has the paper's 80 / 40 / 40, and
Atari sequences store each 84x84 frame once (frames [seq_len + 4, 84, 84]; stacks are rebuilt as views).
`buffer_size` and `learning_starts` count sequences; `replay_ratio` counts updates per env step.

Messages: Ape-X's (see drlmpi.algos.apex), with sequences as the rows of TRANSITIONS(_SHM) and SAMPLE_REPLY(_BLOCK):
  tag / pattern          channel   from -> to                  payload                                when
  TRANSITIONS(_SHM)      replay    actor -> replay             `block_rows` sequences + priorities    a block is full
  SAMPLE_REQUEST         replay    learner -> replay           int64 (rows, offset, inbox slot, 0)    before training
  SAMPLE_REPLY(_BLOCK)   replay    replay -> learner           int64 [8]: (rows, size, total, min)    per request
                                                               and 0, 0, 0, inf [+ sequences]
  PRIORITIES             replay    learner -> replay           slots, generations, sequence priority  every update
  STOP                   replay    actor, learner -> replay    empty                                  at the end
  METRICS, STOP          reports   actor -> lead learner       float64 [9]; empty                     0.5 s; share done
  Ibcast + Bcast         weights   lead -> other hosts' leaders version, float32 weights              publish_every
  Ibarrier + Allreduce   learners  learner <-> learners        gradients + (progress, stop)           every update
  CHECKPOINT(_DONE), SIGNAL  control / replay                  as Ape-X (drlmpi.lifecycle)            on demand
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import value_based as vb
from drlmpi.checkpoint import State
from drlmpi.config import opt
from drlmpi.errors import UserError
from drlmpi.nets import RecurrentQNetwork, load_arrays, load_flat
from drlmpi.ops.qlearning import sequence_priority, sequence_targets
from drlmpi.replay import SequenceBuilder, sequence_fields
from drlmpi.replay.sequence import unstack
from drlmpi.runtime import RoleSpec, Runtime

LAYOUT = RoleSpec(fixed=(("learner", 1), ("replay", 1)), min_actors=1, serial_ok=False)
learner_parts = vb.learner_parts  # the replay learner's declared state (online, target, Adam)


@dataclass
class Config(vb.LearnerConfig):
    seq_len: int = opt(20, "steps per stored sequence (burn-in included)", True)
    burn_in: int = opt(10, "steps at a sequence's start that only warm the recurrent state")
    seq_overlap: int = opt(10, "steps consecutive sequences of an episode share")
    lstm: int = opt(64, "LSTM units", True)
    eta: float = opt(0.9, "sequence priority: eta max |td| + (1 - eta) mean |td|")
    rescale_eps: float = opt(1e-3, "eps of the value rescaling h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x")

    DEFAULTS: ClassVar[dict] = {  # rows are sequences; R2D2 rescales values instead of clipping rewards
        "total_env_steps": 300_000, "hidden": (64,), "n_step": 5, "buffer_size": 10_000, "batch_size": 32,
        "learning_starts": 200, "replay_ratio": 0.1, "lr": 1e-3, "lr_final": 1e-4, "target_update_every": 500,
        "block_rows": 8, "clip_rewards": "off"}
    ATARI: ClassVar[dict] = {  # the paper's sequences; a smaller replay and batch for a CPU learner
        "seq_len": 80, "burn_in": 40, "seq_overlap": 40, "lstm": 512, "gamma": 0.997, "buffer_size": 5_000,
        "batch_size": 16, "learning_starts": 250, "replay_ratio": 0.004, "lr": 1e-4, "lr_final": 1e-5,
        "target_update_every": 2500, "weight_sync_every": 100, "max_grad_norm": 40.0, "block_rows": 2,
        "total_env_steps": 10_000_000}
    MINATAR: ClassVar[dict] = {  # CartPole's sequences, lr and target period, a wider core; 13 sampled steps per
        # env step (docs/minatar.md: lr 1e-4 and the target every 1,000 updates learnt a third as fast)
        "lstm": 128, "buffer_size": 10_000, "batch_size": 32, "learning_starts": 200, "replay_ratio": 0.02,
        "lr": 1e-3, "lr_final": 1e-4, "target_update_every": 250, "total_env_steps": 5_000_000}
    POSITIVE: ClassVar[tuple[str, ...]] = ("seq_len", "lstm")

    def check_own(self):
        if not 0 <= self.burn_in < self.seq_len or not 0 <= self.seq_overlap < self.seq_len:
            raise UserError(f"config: burn_in ({self.burn_in}) and seq_overlap ({self.seq_overlap}) must be in "
                            f"[0, seq_len) (seq_len {self.seq_len})")
        if not 0 <= self.eta <= 1:
            raise UserError(f"config: eta must be in [0, 1], got {self.eta}")


def build_net(cfg: Config, obs_space, act_space) -> RecurrentQNetwork:
    return RecurrentQNetwork(obs_space.shape, int(act_space.n), tuple(cfg.hidden), cfg.lstm, cfg.dueling)


def observations(t: dict[str, torch.Tensor], channels: int) -> torch.Tensor:
    """A batch's observations, time-major [L + 1, B, ...] (stacks rebuilt from frames as a view)."""
    obs = unstack(t["frames"], channels) if "frames" in t else t["obs"]
    return obs.transpose(0, 1)


def sequence_td(net, target, data: dict[str, np.ndarray], cfg: Config, device) -> tuple[torch.Tensor, torch.Tensor]:
    """TD errors in rescaled space on a batch of sequences, with the mask of the steps learned: ([L, B], [L, B]).

    data: the sequence fields [B, ...] (replay.sequence); net unrolls from each stored state, without gradient
    through the burn-in of the sequences that have one; target gives the double-Q bootstrap at every obs."""
    t = {k: torch.as_tensor(v, device=device) for k, v in data.items()}
    obs = observations(t, net.obs_shape[0])
    state = (t["state"][:, 0].contiguous(), t["state"][:, 1].contiguous())
    burned = t["burn"] > 0
    if cfg.burn_in:
        q_burn, mid = net(obs[: cfg.burn_in], state)
        mid = tuple(torch.where(burned[:, None], s.detach(), s) for s in mid)
        q = torch.cat([q_burn, net(obs[cfg.burn_in :], mid)[0]])
    else:
        q = net(obs, state)[0]
    with torch.no_grad():
        q_target = target(obs, state)[0]
        boot = q_target.gather(2, q.detach().argmax(2, keepdim=True)).squeeze(2)  # [L + 1, B]
        reward, discount, valid = (t[k].T for k in ("reward", "discount", "valid"))
        y = sequence_targets(reward, discount, valid, boot, cfg.n_step, cfg.rescale_eps)
    q_taken = q[:-1].gather(2, t["action"].T[..., None]).squeeze(2)
    steps = torch.arange(len(valid), device=device)[:, None]
    return y - q_taken, valid * (steps >= t["burn"][None]).to(valid.dtype)


def priorities(td: torch.Tensor, mask: torch.Tensor, cfg: Config) -> np.ndarray:
    """float64 [B]: eta max |td| + (1 - eta) mean |td| (+ eps) of each sequence's learned steps."""
    return sequence_priority(td.detach(), mask, cfg.eta).cpu().numpy().astype(np.float64) + vb.PRIORITY_EPS


def learn(net, target, batch, device, cfg: Config) -> tuple[torch.Tensor, np.ndarray]:
    """Importance-weighted squared TD error, averaged over each sequence's learned steps: (loss, priorities [B])."""
    td, mask = sequence_td(net, target, batch.data, cfg, device)
    per_sequence = (mask * td**2).sum(0) / mask.sum(0).clamp(min=1)
    w = torch.as_tensor(batch.weights, device=device)
    return 0.5 * (w * per_sequence).mean(), priorities(td, mask, cfg)


class RecurrentEpsilonGreedy:
    """An actor's policy: epsilon-greedy on its copy of the recurrent Q-network (CPU), one state per env."""

    def __init__(self, net: RecurrentQNetwork, cfg: Config):
        self.net, self.cfg = net.requires_grad_(False), cfg
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def load(self, flat: np.ndarray) -> None:
        load_flat(self.net, flat)

    def act(self, obs: np.ndarray, eps: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """-> (actions [E], {"state": the state acted from, float32 [E, 2, H]})."""
        if self.state is None:
            self.state = self.net.initial_state(len(obs))
        before = torch.stack(self.state, 1).numpy()
        with torch.no_grad():
            q, self.state = self.net(torch.as_tensor(obs)[None], self.state)
        q = q[0].numpy()
        actions = q.argmax(axis=1)
        explore = rng.random(len(obs)) < eps
        actions[explore] = rng.integers(0, q.shape[1], explore.sum())
        return actions, {"state": before}

    def reset(self, done: np.ndarray) -> None:
        """Zero the state of the envs whose episode ended."""
        if self.state is not None and done.any():
            keep = torch.as_tensor(~done, dtype=torch.float32)[:, None]
            self.state = (self.state[0] * keep, self.state[1] * keep)

    def priorities(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        """Initial priorities of new sequences from this network's own TD errors (it stands for the target too)."""
        with torch.no_grad():
            return priorities(*sequence_td(self.net, self.net, rows, self.cfg, torch.device("cpu")), self.cfg)


def load_policy(cfg: Config, weights: dict, env):
    """Greedy recurrent policy obs [E, ...] -> actions [E] from checkpoint weights; `policy.reset(done [E])`."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    actor = RecurrentEpsilonGreedy(net.eval(), cfg)
    rng = np.random.default_rng(0)

    def policy(obs):
        return actor.act(obs, 0.0, rng)[0]

    policy.reset = actor.reset
    return policy


def sequences(cfg: Config, obs_space, act_space) -> vb.Rows:
    """R2D2's rows: sequences built by each actor from its env vector. steps_per_row bounds the env steps one
    sequence stands for from above (an episode's first sequence covers up to seq_len new steps, later ones
    seq_len - overlap), so the throttle always lets the actors provide the first learning_starts sequences."""
    return vb.Rows(lambda: build_net(cfg, obs_space, act_space), sequence_fields(obs_space, cfg.seq_len, cfg.lstm),
                   lambda: SequenceBuilder(cfg.num_envs, cfg.seq_len, cfg.seq_overlap, cfg.burn_in, cfg.gamma,
                                           obs_space, cfg.lstm),
                   lambda net: RecurrentEpsilonGreedy(net, cfg), steps_per_row=cfg.seq_len, held=cfg.seq_len)


def setup(rt: Runtime, cfg: Config) -> vb.Planes:
    """Collective: the lead learner's weights plane and the replay plane of sequences."""
    return vb.setup(rt, cfg, rt.layout.ranks("learner")[:1], sequences)


def run_actor(rt: Runtime, cfg: Config, planes: vb.Planes, resumed: State | None) -> None:
    """The replay actor loop (replay.actor) at actor i's fixed epsilon (Ape-X's), building sequences."""
    eps = cfg.actor_epsilon(rt.layout.index(rt.rank), len(rt.layout.ranks("actor")))
    vb.run_actor(rt, cfg, planes, lambda steps, share: eps, resumed)


def run_learner(rt: Runtime, cfg: Config, planes: vb.Planes, resumed: State | None) -> dict:
    """The replay learner (value_based.run_learner) with `learn`."""
    return vb.run_learner(rt, cfg, planes, resumed, "r2d2",
                          lambda net, target, batch, device: learn(net, target, batch, device, cfg))


ROLES = {"actor": run_actor, "replay": vb.run_replay, "learner": run_learner}
