"""What the actor-critic algorithms (A2C, A3C, IMPALA) share, written once.

  ACConfig        the fields and checks of every actor-critic worker: envs, unroll length, discount, losses
  build_net, load_policy
                  the actor-critic network (MLP or Nature CNN torso; policy logits and value) and the greedy
                  (most probable action) policy of a checkpoint
  collect         one on-policy unroll [n_steps, E] with the current weights
  nstep_loss      the n-step advantage actor-critic loss of an unroll (A2C, A3C)
  unroll_loss     the loss of a learner's batch of unrolls [T + 1, N]: V-trace (IMPALA, SEED) or uncorrected
                  n-step returns (GA3C); with the recurrent state at each unroll's start when the net has a core
  learners_step   the update of one or several learners after backward: allreduce (with the lead's progress and
                  counts), the mean over the learners that had a batch, clipping, the lr schedule, the step
  CentralConfig   central inference (GA3C, SEED): batch size, timeout, LSTM core
  run_remote_actor
                  an actor with no model: steps its envs with the actions a server answers (comm.inference)
  answer_batch    a server's step: one forward over the waiting actors' observations, sampled actions answered,
                  then every step filed into its actor's unroll (comm.inference.Assembler)
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi.config import Common, Hparam, opt, require_at_least
from drlmpi.errors import UserError
from drlmpi.nets import ActorCritic, load_arrays
from drlmpi.ops import vtrace
from drlmpi.ops.actor_critic import Losses, actor_critic_loss, sample_actions
from drlmpi.ops.schedules import linear


@dataclass
class ACConfig(Common):
    num_envs: int = opt(8, "environments stepped together per worker")
    total_env_steps: int = opt(1_000_000, "environment steps (all workers' envs) to train for")
    n_steps: int = opt(5, "steps per unroll (the n of the n-step returns)")
    gamma: float = opt(0.99, "discount")
    lr: float = opt(1e-3, "learning rate at the start")
    lr_final: float = opt(0.0, "learning rate reached linearly at the end of training")
    entropy_cost: float = opt(0.01, "weight of the entropy bonus")
    baseline_cost: float = opt(0.5, "weight of the value loss")
    max_grad_norm: float = opt(0.5, "gradient clipping by global norm")
    hidden: tuple[int, ...] = opt((64, 64), "MLP hidden sizes (vector observations)")
    clip_rewards: str = opt("auto", "clip rewards to [-1, 1] for learning: auto (Atari only), on, off")

    SEARCH: ClassVar[dict] = {"lr": Hparam(("lr", "lr_final"), 1e-5, 1e-2),  # what PBT may search (algos.pbt)
                              "gamma": Hparam(("gamma",), 0.9, 0.9999, "log1m"),
                              "entropy": Hparam(("entropy_cost",), 1e-4, 0.1)}

    def check(self):
        require_at_least(self, ("num_envs", "n_steps", "total_env_steps"))
        if not 0 <= self.gamma <= 1:
            raise UserError(f"config: gamma must be in [0, 1], got {self.gamma}")
        if self.clip_rewards not in ("auto", "on", "off"):
            raise UserError(f"config: clip_rewards must be auto, on or off, got {self.clip_rewards!r}")


def build_net(cfg: ACConfig, obs_space, act_space) -> ActorCritic:
    return ActorCritic(obs_space.shape, act_space.n, cfg.hidden, getattr(cfg, "lstm", 0))


def load_policy(cfg: ACConfig, weights: dict, env):
    """Greedy policy obs [E, ...] -> actions [E] (the most probable action) from checkpoint weights; with an LSTM
    core it carries its state, which `policy.reset(done [E])` zeroes where episodes ended."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    net.eval()
    state = [net.initial_state(env.num_envs)]

    def policy(obs):
        with torch.no_grad():
            logits, _, state[0] = net(torch.as_tensor(obs)[None], state[0])
            return logits[0].argmax(-1).numpy()

    def reset(done: np.ndarray):
        keep = torch.as_tensor(~done, dtype=torch.float32).unsqueeze(1)
        state[0] = tuple(s * keep for s in state[0])

    policy.reset = reset
    return policy


def collect(net, env, obs: np.ndarray, cfg: ACConfig, clip: bool, episodes: list, out: dict | None = None
            ) -> tuple[dict, np.ndarray]:
    """One unroll [n_steps, E] with the current weights: obs, action, reward, discount (gamma, 0 after a
    termination), and the acting logits [n_steps, E, A] if `out` has them; a truncated episode's reward gets
    gamma V(final obs) and discount 0. Fills `out` (field views with at least n_steps rows, e.g. an unroll slot)
    or new arrays. Returns (unroll, next obs); finished episodes' returns are appended to `episodes`."""
    T, E = cfg.n_steps, env.num_envs
    u = out if out is not None else {
        "obs": np.empty((T, *obs.shape), obs.dtype), "action": np.empty((T, E), np.int64),
        "reward": np.empty((T, E), np.float32), "discount": np.empty((T, E), np.float32)}
    with torch.no_grad():
        for t in range(T):
            u["obs"][t] = obs
            logits, _, _ = net(torch.as_tensor(obs)[None])
            action = sample_actions(logits[0]).numpy()
            if "logits" in u:
                u["logits"][t] = logits[0].numpy()
            step = env.step(action)
            reward = np.clip(step.reward, -1, 1) if clip else step.reward
            cut = step.truncated & ~step.terminated
            if cut.any():  # bootstrap a time limit: it is not the end of the task
                _, v, _ = net(torch.as_tensor(step.final_obs[cut])[None])
                reward = reward.copy()
                reward[cut] += cfg.gamma * v[0].numpy()
            u["action"][t], u["reward"][t] = action, reward
            u["discount"][t] = cfg.gamma * ~step.done
            episodes += [ret for ret, _ in step.episodes]
            obs = step.obs
    return u, obs


def nstep_loss(net, u: dict, last_obs: np.ndarray, cfg: ACConfig) -> Losses:
    """The n-step advantage actor-critic loss of an unroll (V-trace with log rhos 0: the bootstrapped returns)."""
    logits, values, _ = net(torch.as_tensor(u["obs"]))
    with torch.no_grad():
        bootstrap = net(torch.as_tensor(last_obs)[None])[1][0]
    discounts, rewards = torch.as_tensor(u["discount"]), torch.as_tensor(u["reward"])
    ret = vtrace.from_importance_weights(torch.zeros_like(rewards), discounts, rewards, values.detach(), bootstrap)
    return actor_critic_loss(logits, values, torch.as_tensor(u["action"]), ret.vs, ret.pg_advantages,
                             cfg.baseline_cost, cfg.entropy_cost)




def unroll_loss(net, batch: dict, cfg: ACConfig, device, clip: tuple[float | None, float | None] | None):
    """Actor-critic loss of a batch {field: [T + 1, N, ...]} (row T: the bootstrap observation; `h0`, `c0` [1, N, H]:
    the recurrent state entering row 0, whose reset is already applied). clip: V-trace's (rho-bar, pg rho-bar) with
    the behaviour `logits`, or None for no correction (log rhos 0: the bootstrapped n-step returns)."""
    T = cfg.n_steps
    b = {k: torch.as_tensor(v, device=device) for k, v in batch.items()}
    state, reset = (), None
    if "h0" in b:
        state = (b["h0"][0], b["c0"][0])
        reset = torch.zeros(b["discount"].shape, dtype=torch.bool, device=device)
        reset[1:] = b["discount"][:T] == 0  # step t + 1 starts an episode where step t ended one
    logits, values, _ = net(b["obs"], state, reset)  # [T + 1, N, A], [T + 1, N]
    actions = b["action"][:T]
    args = (b["discount"][:T], b["reward"][:T], values[:T].detach(), values[T].detach())
    if clip is None:
        vt = vtrace.from_importance_weights(torch.zeros_like(args[1]), *args)
    else:
        vt = vtrace.from_logits(b["logits"][:T], logits[:T].detach(), actions, *args, *clip)
    return actor_critic_loss(logits[:T], values[:T], actions, vt.vs, vt.pg_advantages, cfg.baseline_cost,
                             cfg.entropy_cost)


def learners_step(net, opt, allreduce, n_learners: int, progress: float, had: bool, extra: float, cfg: ACConfig
                  ) -> float | None:
    """After backward (if this learner `had` a batch): one allreduce of the gradients and (the lead's progress in
    [0, 1], had, extra), the gradient mean over the learners that had a batch, clipping by `max_grad_norm`, the lr
    at that progress, the optimizer step. Returns the sum of `extra` over the learners, or None (no step) when no
    learner had a batch."""
    frac, contributed, extra_sum = allreduce(np.array([progress, had, extra]))
    if not contributed:
        return None
    if contributed < n_learners:
        for p in net.parameters():
            p.grad.mul_(n_learners / contributed)
    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
    for g in opt.param_groups:
        g["lr"] = linear(cfg.lr, cfg.lr_final, min(1.0, float(frac)))
    opt.step()
    return float(extra_sum)


@dataclass
class CentralConfig(ACConfig):
    num_envs: int = opt(16, "environments stepped together per actor (one round trip per step for all of them)")
    inference_batch: int = opt(64, "a server answers as soon as it holds this many requests (of all its actors)")
    inference_timeout_ms: float = opt(2.0, "... or this long after the first one of the batch arrived")
    lstm: int = opt(0, "LSTM core size (0: none); the state of every actor's envs is kept on its server")

    def check(self):
        super().check()
        require_at_least(self, ("inference_batch",))
        if self.inference_timeout_ms < 0:
            raise UserError(f"config: inference_timeout_ms must be >= 0, got {self.inference_timeout_ms}")
        require_at_least(self, ("lstm",), least=0)


def central_fields(cfg: CentralConfig, obs_space, act_space) -> tuple[dict, dict, dict, tuple[str, ...]]:
    """(request, reply, unroll fields, the unroll's one-row fields) of central inference, each [E, ...]."""
    E, o = cfg.num_envs, ((cfg.num_envs, *obs_space.shape), obs_space.dtype)
    request = {"obs": o, "final_obs": o, "reward": ((E,), np.float32), "discount": ((E,), np.float32),
               "cut": ((E,), np.uint8)}
    reply = {"action": ((E,), np.int64)}
    unroll = {"obs": o, "action": ((E,), np.int64), "reward": ((E,), np.float32), "discount": ((E,), np.float32),
              "logits": ((E, act_space.n), np.float32)}
    once = ()
    if cfg.lstm:
        unroll |= {"h0": ((E, cfg.lstm), np.float32), "c0": ((E, cfg.lstm), np.float32)}
        once = ("h0", "c0")
    return request, reply, unroll, once


def run_remote_actor(rt, cfg: CentralConfig, client, report, ckpt, share: int, steps: int) -> None:
    """Step `num_envs` envs with the actions the server answers until this actor's `share` of env steps (from
    `steps`) or the lead's LAST checkpoint request; every request carries the new observations and the outcome of
    the previous step (reward, discount gamma or 0, and where a time limit cut an episode the final observation,
    which the server bootstraps with gamma V). Ends with STOP to the server and to the lead."""
    from drlmpi.envs import clips_rewards, make_vec

    env = make_vec(cfg.env, cfg.num_envs, seed=int(rt.gen.integers(2**31)))
    clip = clips_rewards(cfg)
    req = client.request
    req["obs"][:] = env.reset()
    req["reward"][:] = req["discount"][:] = req["cut"][:] = 0
    client.send()
    while True:
        version = client.receive(on_wait=ckpt.poll)
        ckpt.poll()
        if steps >= share or ckpt.last:
            break
        step = env.step(client.reply["action"])
        req["obs"][:] = step.obs
        req["reward"][:] = np.clip(step.reward, -1, 1) if clip else step.reward
        req["discount"][:] = cfg.gamma * ~step.done
        cut = step.truncated & ~step.terminated
        req["cut"][:] = cut
        if cut.any():
            req["final_obs"][cut] = step.final_obs[cut]
        client.send()
        steps += cfg.num_envs
        report.step(cfg.num_envs, [ret for ret, _ in step.episodes], version)
        report.maybe_isend()
    client.close()
    report.close()
    ckpt.close()
    env.close()


def answer_batch(net, server, js: list[int], asm, version: int, states: list, cfg: CentralConfig, device) -> None:
    """Answer the waiting actors js (comm.inference.InferenceServer) with actions sampled from one forward of net
    over their observations [len(js) * E, ...] (and the final observations of episodes a time limit cut, for their
    bootstrap value), then file each actor's step into its unroll (asm). states[j]: actor j's recurrent state
    ((h, c) [E, H] each, or ()), carried here from step to step."""
    E = cfg.num_envs
    reqs = [server.request(j) for j in js]
    cuts = [np.flatnonzero(r["cut"]) if server.k[j] else np.zeros(0, np.int64) for j, r in zip(js, reqs)]
    n = len(js) * E
    x = np.concatenate([r["obs"] for r in reqs] + [r["final_obs"][c] for r, c in zip(reqs, cuts)])
    state, start = (), None
    if cfg.lstm:
        first = np.concatenate([np.full(E, server.k[j] == 0) | (r["discount"] == 0) for j, r in zip(js, reqs)])
        keep = torch.as_tensor(~first, dtype=torch.float32).unsqueeze(1)
        entering = [torch.cat([states[j][i] for j in js]) * keep for i in range(2)]  # reset where episodes begin
        start = entering
        state = tuple(torch.cat([s] + [states[j][i][c] for j, c in zip(js, cuts)])
                      for i, s in enumerate(entering))
    with torch.no_grad():
        logits, values, new = net(torch.as_tensor(x, device=device)[None], state)
    actions = sample_actions(logits[0, :n]).cpu().numpy()
    for a, j in enumerate(js):
        server.reply(j)["action"][:] = actions[a * E : (a + 1) * E]
    server.answer(js, version)  # the actors step on while the server files the steps
    logits, bootstrap = logits[0, :n].cpu().numpy(), values[0, n:].cpu().numpy()
    off = 0
    for a, (j, r, c) in enumerate(zip(js, reqs, cuts)):
        rows = slice(a * E, (a + 1) * E)
        reward = r["reward"]
        if len(c):
            reward = reward.copy()
            reward[c] += cfg.gamma * bootstrap[off : off + len(c)]
            off += len(c)
        now = {"obs": r["obs"], "action": actions[rows], "logits": logits[rows]}
        first = server.k[j] == 0
        st = None
        if cfg.lstm and asm.begins(j, first):
            st = {"h0": start[0][rows].cpu().numpy(), "c0": start[1][rows].cpu().numpy()}
        asm.add(j, first, {"reward": reward, "discount": r["discount"]}, now, st, version)
        if cfg.lstm:
            states[j] = (new[0][rows], new[1][rows])
