"""Each plane on its own channel: a message sent on one plane is never taken by another plane's probe.

Every rank but 0 sends rank 0 one message on each channel, with the tag of a different plane's message
(e.g. a METRICS-tagged message on the control channel). Rank 0 then probes each channel for any source
and any tag, the way the lead learner drains reports and a replay shard serves: it must find exactly
the messages sent on that channel, and none of the others.
"""

import time

import numpy as np
from _report import report
from mpi4py import MPI

from drlmpi import runtime
from drlmpi.comm.tags import Tag

world = MPI.COMM_WORLD
failures = []
rt = runtime.start(runtime.RoleSpec(fixed=(("learner", 1),), min_actors=1, serial_ok=False), "test", seed=0)
ch = rt.channels
planes = {"control": ch.control, "reports": ch.reports, "replay": ch.replay, "weights": ch.weights,
          "params": ch.params, "trajectories": ch.trajectories, "inference": ch.inference}
tags = [Tag.STOP, Tag.METRICS, Tag.SAMPLE_REQUEST, Tag.CONTROL, Tag.GRADIENT, Tag.TRANSITIONS,
        Tag.TRAJECTORY]  # a foreign tag each
if len(set(map(MPI.Comm.Compare, planes.values(), [world] * len(planes)))) != 1 or any(
        MPI.Comm.Compare(c, world) != MPI.CONGRUENT for c in planes.values()):
    failures.append(f"rank {world.rank}: a channel is not a duplicate of the world")
runtime.barrier(world)
if world.rank:
    reqs = [comm.Isend(np.full(2, k, np.int64), dest=0, tag=tags[k]) for k, comm in enumerate(planes.values())]
    runtime.wait_all(reqs, timeout=30, what="sends to rank 0")
else:
    st, buf = MPI.Status(), np.zeros(2, np.int64)
    for k, (name, comm) in enumerate(planes.items()):  # drain each channel as a lead or a shard does
        got = []
        deadline = time.monotonic() + 20
        while len(got) < world.size - 1 and time.monotonic() < deadline:
            if comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, st):
                comm.Recv(buf, source=st.source, tag=st.tag)
                got.append((st.source, st.tag, int(buf[0])))
            else:
                time.sleep(1e-3)
        want = sorted((r, tags[k], k) for r in range(1, world.size))
        if sorted(got) != want:
            failures.append(f"channel {name}: probed {sorted(got)}, expected {want}")
    time.sleep(0.2)
    left = [name for name, comm in planes.items() if comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG)]
    if left:
        failures.append(f"messages left on {left}")
runtime.barrier(world)
report(failures)
