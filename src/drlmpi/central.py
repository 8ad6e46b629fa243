"""Central inference (GA3C, SEED RL): actors with no model, a server that acts for them and assembles their unrolls.

  CentralConfig   the fields of central inference: batch size, timeout, LSTM core
  central_fields  the request, reply and unroll fields of the inference and trajectory planes
  run_remote_actor
                  an actor with no model: steps its envs with the actions a server answers (comm.inference)
  answer_batch    a server's step: one forward over the waiting actors' observations, sampled actions answered,
                  then every step filed into its actor's unroll (comm.inference.Assembler)

An actor with no model imports no torch (its ~130 MiB): torch is imported by the server's functions alone.
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from drlmpi.ac_config import ACConfig
from drlmpi.config import opt, require_at_least
from drlmpi.errors import UserError


@dataclass
class CentralConfig(ACConfig):
    inference_batch: int = opt(64, "a server answers as soon as it holds this many requests (of all its actors)")
    inference_timeout_ms: float = opt(2.0, "... or this long after the first one of the batch arrived")
    lstm: int = opt(0, "LSTM core size (0: none); the state of every actor's envs is kept on its server", True)

    DEFAULTS: ClassVar[dict] = {"num_envs": 16}  # one round trip per step for all of an actor's envs
    POSITIVE: ClassVar[tuple[str, ...]] = ("inference_batch",)

    def check_own(self):
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
    client.post()
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
        req["cut"][:] = cut if step.restarted is None else cut + step.restarted  # 2: a failed env (no transition)
        if cut.any():
            req["final_obs"][cut] = step.final_obs[cut]
        client.post()
        steps += cfg.num_envs
        report.step(cfg.num_envs, [ret for ret, _ in step.episodes], version)
        report.maybe_post()
    client.close()
    report.close()
    ckpt.close()
    env.close()


def answer_batch(net, server, js: list[int], asm, version: int, states: list, cfg: CentralConfig, device) -> None:
    """Answer the waiting actors js (comm.inference.InferenceServer) with actions sampled from one forward of net
    over their observations [len(js) * E, ...] (and the final observations of episodes a time limit cut, for their
    bootstrap value), then file each actor's step into its unroll (asm). states[j]: actor j's recurrent state
    ((h, c) [E, H] each, or ()), carried here from step to step."""
    import torch

    from drlmpi.ops import policy as pi

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
    actions = pi.sample(logits[0, :n]).cpu().numpy()
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
            factor = np.where(r["cut"][c] == 2, 1.0, cfg.gamma)  # (a failed env: its return is V, advantage ~0)
            reward[c] += factor * bootstrap[off : off + len(c)]
            off += len(c)
        now = {"obs": r["obs"], "action": actions[rows], "logits": logits[rows]}
        first = server.k[j] == 0
        st = None
        if cfg.lstm and asm.begins(j, first):
            st = {"h0": start[0][rows].cpu().numpy(), "c0": start[1][rows].cpu().numpy()}
        asm.add(j, first, {"reward": reward, "discount": r["discount"]}, now, st, version)
        if cfg.lstm:
            states[j] = (new[0][rows], new[1][rows])
