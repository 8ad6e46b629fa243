"""The inference server's batching rules under mpiexec: rank 0 serves, the others are actors (on its host through
node segments, or on pretend hosts through buffer messages).

  lone      one actor asks, the others do not: it is answered after the batch timeout (not before, not much later)
  full      every actor asks with a 10 s timeout and batch = the number of actors: answered at once
  finished  actor 1 says STOP, the others ask (batch = all actors, 10 s timeout): answered at once, since an actor
            that finished is never waited for; once all have said STOP, gather says so
Each answer carries the request's observations + 1 and the version, so the reply is checked, too.
"""

import time

import numpy as np
from _report import report
from mpi4py import MPI

from drlmpi import runtime

world = MPI.COMM_WORLD
failures = []
rt = runtime.start(runtime.RoleSpec(fixed=(("learner", 1),), min_actors=1, serial_ok=False), "test", seed=0)
from drlmpi.comm.inference import InferencePlane  # noqa: E402

E = 4
plane = InferencePlane.create(rt.channels.inference, rt.node, {"obs": ((E, 3), np.float32)},
                              {"action": ((E, 3), np.float32)}, actor=world.rank > 0)
actors = list(range(1, world.size))
LONE = 0.2


def serve(server, version):
    t0 = time.monotonic()
    js = server.collect()
    waited = time.monotonic() - t0
    for j in js:
        server.reply(j)["action"][:] = server.request(j)["obs"] + 1
    server.answer(js, version)
    return sorted(server.actors[j] for j in js), waited


def ask(client, version):
    client.request["obs"][:] = world.rank * 10 + client.k
    expect = client.request["obs"] + 1
    client.post()
    t0 = time.monotonic()
    got = client.receive(timeout=30)
    if got != version or not np.array_equal(client.reply["action"], expect):
        failures.append(f"rank {world.rank}: reply version {got} (want {version}) or values wrong")
    return time.monotonic() - t0


if world.rank == 0:
    got, lone = serve(plane.server(actors, batch=len(actors), timeout=LONE), 1)
    if got != [1] or not LONE * 0.95 <= lone < LONE + 0.1:
        failures.append(f"lone: answered {got} after {lone:.3f} s (timeout {LONE} s)")
    runtime.barrier(world, timeout=30)
    got, waited = serve(plane.server(actors, batch=len(actors), timeout=10.0), 2)
    if got != actors or waited > 2.0:
        failures.append(f"full: answered {got} after {waited:.3f} s (a full batch must not wait for the timeout)")
    runtime.barrier(world, timeout=30)
    server = plane.server(actors, batch=len(actors), timeout=10.0)
    got, waited = serve(server, 3)
    if got != actors[1:] or waited > 2.0:
        failures.append(f"finished: answered {got} after {waited:.3f} s (actor 1 stopped: never wait for it)")
    if server.collect() is not None:
        failures.append("finished: gather after every STOP must say None")
    server.close()
    print(f"inference server: lone request answered after {lone:.3f} s of a {LONE} s timeout, a batch of the live "
          f"actors after {waited:.3f} s", flush=True)
else:
    client = plane.client(0, world.rank - 1)
    if world.rank == 1:
        rtt = ask(client, 1)
        if rtt < LONE * 0.95:
            failures.append(f"lone: answered after {rtt:.3f} s, before the {LONE} s timeout")
    runtime.barrier(world, timeout=30)
    ask(client, 2)
    runtime.barrier(world, timeout=30)
    if world.rank == 1:
        client.close()
    else:
        time.sleep(0.05)  # the STOP is in before these requests
        ask(client, 3)
        client.close()
report(failures, world)
