"""Central inference in one process: the rank is its own actor and server on a real InferencePlane (MPI messages to
itself, its own node segment). An actor's trajectory is assembled in step order with its recurrent state: the
learner's forward over the stored unroll, from the stored state at its start and with resets where episodes ended,
gives back exactly the logits the server acted with."""

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete
from mpi4py import MPI

from drlmpi.algos import impala
from drlmpi.central import CentralConfig, answer_batch, central_fields
from drlmpi.comm.inference import Assembler, InferencePlane, assign
from drlmpi.comm.tags import Tag
from drlmpi.nets import ActorCritic

E, T, OBS, A = 3, 4, 5, 2


def make(lstm: int):
    cfg = CentralConfig(num_envs=E, n_steps=T, lstm=lstm, gamma=0.9)
    request, reply, unroll, once = central_fields(cfg, Box(-1, 1, (OBS,), np.float32), Discrete(A))
    comm = MPI.COMM_SELF.Dup()
    plane = InferencePlane.create(comm, MPI.COMM_SELF, request, reply, actor=True)
    client, server = plane.client(0, 0), plane.server([0], batch=8, timeout=0.5)
    emitted = []
    rows = {k: 1 if k in once else T + 1 for k in unroll}

    def acquire(j):
        return len(emitted), {k: np.full((rows[k], *s), np.nan if np.dtype(d).kind == "f" else -1, d)
                              for k, (s, d) in unroll.items()}

    cur = {}

    def acq(j):
        h, u = acquire(j)
        cur[j] = u
        return h, u

    asm = Assembler(1, T, acq, lambda j, h, v: emitted.append((dict(cur[j]), v)))
    return cfg, client, server, asm, emitted


@pytest.mark.parametrize("lstm", [0, 8])
def test_trajectory_assembled_in_order_with_its_recurrent_state(lstm):
    torch.manual_seed(0)
    cfg, client, server, asm, emitted = make(lstm)
    net = ActorCritic((OBS,), A, (16,), lstm)
    states = [net.initial_state(E)]
    rng = np.random.default_rng(0)
    sent = []  # what the actor sent, step by step
    for k in range(3 * T + 2):
        req = client.request
        req["obs"][:] = rng.normal(size=(E, OBS))
        req["reward"][:] = rng.normal(size=E)
        done = rng.random(E) < 0.3 if k else np.zeros(E, bool)
        req["discount"][:] = cfg.gamma * ~done
        req["cut"][:] = done & (rng.random(E) < 0.5)
        req["final_obs"][:] = rng.normal(size=(E, OBS))
        sent.append({n: v.copy() for n, v in req.items()})
        client.post()
        js = server.collect()
        assert js == [0]
        answer_batch(net, server, js, asm, version=100 + k, states=states, cfg=cfg, device=torch.device("cpu"))
        assert client.receive() == 100 + k
        sent[-1]["action"] = client.reply["action"].copy()
    assert [v for _, v in emitted] == [100, 100 + T, 100 + 2 * T]  # the version that acted on each first step
    for n, (u, _) in enumerate(emitted):
        steps = sent[n * T : (n + 1) * T + 1]
        np.testing.assert_array_equal(u["obs"], np.stack([s["obs"] for s in steps]))  # row T: the bootstrap obs
        np.testing.assert_array_equal(u["action"][:T], np.stack([s["action"] for s in steps[:T]]))
        np.testing.assert_array_equal(u["discount"][:T], np.stack([s["discount"] for s in steps[1:]]))
        plain = ~np.stack([s["cut"] for s in steps[1:]]).astype(bool)
        np.testing.assert_allclose(u["reward"][:T][plain], np.stack([s["reward"] for s in steps[1:]])[plain])
        # a time limit's cut gets gamma V(final obs): never the bare reward
        assert (u["reward"][:T][~plain] != np.stack([s["reward"] for s in steps[1:]])[~plain]).all()
        b = {k: torch.as_tensor(v) for k, v in u.items()}
        state, reset = (), None
        if lstm:
            state = (b["h0"][0], b["c0"][0])
            reset = torch.zeros(T + 1, E, dtype=torch.bool)
            reset[1:] = b["discount"][:T] == 0
        with torch.no_grad():
            logits, _, _ = net(b["obs"], state, reset)
        torch.testing.assert_close(logits[:T], b["logits"][:T])
        loss = impala.learn(net, u, impala.Config(num_envs=E, n_steps=T, gamma=0.9), torch.device("cpu"))
        assert torch.isfinite(loss.total)
    stop = client.comm.Isend(np.zeros(0, np.uint8), dest=0, tag=Tag.STOP)  # client.close() without its wait (one
    assert server.collect() is None  # process: its own server must take it first); the only actor said STOP
    stop.Wait()
    server.close()


def test_first_request_drops_the_partial_unroll():
    emitted, acquired = [], []

    def acquire(j):
        acquired.append(j)
        return len(acquired), {"x": np.full((T + 1, 1), -1.0)}

    asm = Assembler(1, T, acquire, lambda j, h, v: emitted.append(h))
    for k in range(T - 1):
        asm.add(0, k == 0, {}, {"x": np.array([k])})
    asm.add(0, True, {}, {"x": np.array([50.0])})  # the actor started again (resumed): the partial unroll is dropped
    for k in range(1, T + 1):
        asm.add(0, False, {}, {"x": np.array([50.0 + k])})
    assert emitted == [1] and acquired == [0, 0]


def test_actors_are_served_on_their_own_host_where_it_has_a_server():
    host_of = [0, 0, 0, 1, 1, 1, 2]
    got = assign([1, 2, 4, 5, 6], [0, 3], host_of)
    assert got == {1: 0, 2: 0, 4: 3, 5: 3, 6: 0}
