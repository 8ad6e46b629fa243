"""PPO's step follows the mean over every worker's samples: with 2 workers holding 3 and 1 samples, one update (SGD
at lr 1, no clipping) moves the weights by -(3 g0 + 1 g1) / 4, g_r the gradient of worker r's own mean minibatch
loss, not by the plain mean of the two gradients (which a weighting by worker would give); the same with the
gradients copied through the allreduce's buffer and bound to it (GradAllreduce.bind_grads: backward writes into the
buffer, nothing copied). Run with -n 2."""

import numpy as np
import torch
from _report import report
from mpi4py import MPI

from drlmpi.actor_critic import build_net
from drlmpi.algos import ppo
from drlmpi.comm.allreduce import GradAllreduce
from drlmpi.envs import spaces
from drlmpi.nets import flat_params, load_flat

world = MPI.COMM_WORLD
cfg = ppo.Config(env="CartPole-v1", epochs=1, minibatches=1, lr=1.0, lr_final=1.0, max_grad_norm=1e9)
torch.manual_seed(0)
net = build_net(cfg, *spaces("CartPole-v1"))


def batch(rank: int) -> dict:
    """Worker `rank`'s samples: 3 on rank 0, 1 on rank 1, the same on every rank (seeded)."""
    g = torch.Generator().manual_seed(100 + rank)
    n = 3 if rank == 0 else 1
    obs = torch.randn(n, 4, generator=g)
    with torch.no_grad():
        head, value, _ = net(obs[None])
    action = torch.randint(0, 2, (n,), generator=g)
    log_prob = torch.log_softmax(head[0], -1).gather(-1, action[:, None])[:, 0]
    return {"obs": obs, "action": action, "log_prob": log_prob, "value": value[0],
            "advantage": torch.randn(n, generator=g), "return": torch.randn(n, generator=g)}


def grad_of(b: dict) -> np.ndarray:
    net.zero_grad(set_to_none=True)
    ppo.minibatch_loss(net, b, cfg, cfg.clip).total.backward()
    return np.concatenate([p.grad.reshape(-1).numpy() for p in net.parameters()])


g0, g1 = grad_of(batch(0)), grad_of(batch(1))
expected_step = -(3 * g0 + 1 * g1) / 4
start = flat_params(net)
before = start.astype(np.float64)
opt = torch.optim.SGD(net.parameters(), lr=1.0)
allreduce = GradAllreduce(world, list(net.parameters()), "mpi", extra=7)
failures = []
for bound in (False, True):
    load_flat(net, start)
    if bound and not allreduce.bind_grads():
        failures.append("GradAllreduce.bind_grads refused CPU parameters")
    ppo.learn(net, opt, allreduce, batch(world.rank), cfg, 0.0, np.zeros(6), np.random.default_rng(0))
    if allreduce.bound() != bound:
        failures.append(f"gradients bound to the buffer: {allreduce.bound()}, expected {bound}")
    step = flat_params(net).astype(np.float64) - before
    if not np.allclose(step, expected_step, atol=1e-5):
        failures.append(f"rank {world.rank}, bound {bound}: step differs from the samples-weighted mean by "
                        f"{np.abs(step - expected_step).max():.2e}")
    if np.allclose(step, -(g0 + g1) / 2, atol=1e-5):
        failures.append(f"bound {bound}: the step is the plain mean of the workers' gradients")
report(failures)
