"""The per-rank runtime: layout, role and node communicators, one channel per plane, seeds, torch threads.

Node groups come from `Split_type(COMM_TYPE_SHARED)`; for tests,
`DRLMPI_RANKS_PER_NODE=k` splits ranks into pretend hosts of k consecutive ranks
so the cross-host paths run on one machine. Rank 0 of each node communicator is
that node's leader; `leaders` joins the leaders (None on other ranks).

Every plane talks on its own duplicate of the world communicator (`Channels`): a probe for any
source and tag on one plane can never take another plane's message, whatever the order of events.
"""

import os
import socket
import sys
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from drlmpi.runtime.guard import set_role, unlink_mpi_segments
from drlmpi.runtime.layout import Layout, RoleSpec, build_layout
from drlmpi.runtime.wait import PEER_TIMEOUT


@dataclass(frozen=True)
class Channels:
    """One `Dup` of the world communicator per plane (same ranks, separate message spaces)."""

    control: MPI.Intracomm  # lead learner <-> other learners, parameter server -> lead: counters, stop
    reports: MPI.Intracomm  # actors -> lead learner: metrics, stop
    replay: MPI.Intracomm  # actors, learners <-> replay shards: blocks, samples, priorities, stop
    weights: MPI.Intracomm  # weights pushes across hosts (sub-communicators are split from it)
    params: MPI.Intracomm  # learners -> parameter-server shards: gradient slices, stop
    trajectories: MPI.Intracomm  # actors -> learners: unrolls, acknowledgements, stop
    inference: MPI.Intracomm  # actors <-> inference servers: observations, actions, stop

    @staticmethod
    def create(world: MPI.Intracomm) -> "Channels":
        """Collective over world."""
        return Channels(*(world.Dup() for _ in range(7)))


@dataclass
class Runtime:
    world: MPI.Intracomm
    layout: Layout
    role: str
    role_comm: MPI.Intracomm  # ranks of this role
    node: MPI.Intracomm  # ranks on this host (or pretend host)
    leaders: MPI.Intracomm | None  # node leaders; None unless this rank leads its node
    seed_seq: np.random.SeedSequence  # this rank's seed sequence: spawn children for envs, torch, ...
    channels: Channels
    gen: np.random.Generator  # this rank's main generator: its state is saved in checkpoints

    @property
    def rank(self) -> int:
        return self.world.rank

    @property
    def size(self) -> int:
        return self.world.size

    @property
    def who(self) -> str:
        """This rank's name in checkpoints: "<role>-<index among its role>"."""
        return f"{self.role}-{self.layout.index(self.rank)}"

    def torch_seed(self) -> int:
        return int(self.seed_seq.spawn(1)[0].generate_state(1)[0])

    def use_threads(self) -> None:
        """torch's threads set to this rank's share of its host's cores, where torch is imported (a rank with no
        model never imports it: GA3C's and SEED RL's actors). Called at start, and by a role that imports torch
        later, right after (ac_config.initial_net_unless_actor)."""
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(self.layout.threads[self.rank])


def pretend_ranks_per_node() -> int:
    """DRLMPI_RANKS_PER_NODE as an int; 0 when unset or 0 (real hosts)."""
    return max(0, int(os.environ.get("DRLMPI_RANKS_PER_NODE", "0") or 0))


def node_comm(world: MPI.Intracomm) -> MPI.Intracomm:
    per_node = pretend_ranks_per_node()
    if per_node:
        return world.Split(world.rank // per_node, world.rank)
    return world.Split_type(MPI.COMM_TYPE_SHARED, key=world.rank)


def host_names(world: MPI.Intracomm, node: MPI.Intracomm) -> tuple[str, ...]:
    """Host name of every rank (pretend hosts get a `#node` suffix); control plane, once."""
    name = socket.gethostname()
    if pretend_ranks_per_node():
        name += f"#{world.rank // pretend_ranks_per_node()}"
    from drlmpi.comm.control import allgather_json

    return tuple(allgather_json(world, name, what="every rank's host name"))


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_thread_level(layout: Layout) -> None:
    """Weights relays are helper threads calling MPI beside the main thread: across hosts that needs
    MPI_THREAD_MULTIPLE. On one host no relay runs, so any thread level works."""
    from drlmpi.errors import UserError

    provided = MPI.Query_thread()
    if len(set(layout.hosts)) > 1 and provided < MPI.THREAD_MULTIPLE:
        names = {MPI.THREAD_SINGLE: "single", MPI.THREAD_FUNNELED: "funneled", MPI.THREAD_SERIALIZED: "serialized"}
        raise UserError(f"MPI provides thread level {names.get(provided, provided)}, but a job over several hosts "
                        "needs 'multiple' (weights relay threads): unset MPI4PY_RC_THREAD_LEVEL or use an MPI "
                        "built with thread support")


def start(spec: RoleSpec, algo: str, seed: int, world: MPI.Intracomm | None = None,
          torch_threads: int = 0) -> Runtime:
    """Build the layout (raises UserError when it cannot), communicators, seeds; set torch threads (where torch is
    imported: Runtime.use_threads)."""
    world = world or MPI.COMM_WORLD
    node = node_comm(world)
    from drlmpi.runtime.wait import barrier

    barrier(node, PEER_TIMEOUT, what="the ranks of this host at start-up")  # every rank attached MPI's node memory
    unlink_mpi_segments()
    from drlmpi.comm.control import allgather_json

    cores = tuple(allgather_json(world, usable_cores(), what="every rank's cores"))  # control plane, once
    layout = build_layout(world.size, spec, algo, host_names(world, node), cores, torch_threads)
    check_thread_level(layout)
    role = layout.roles[world.rank]
    set_role(role)
    role_comm = world.Split(layout.roles.index(role), world.rank)
    is_leader = node.rank == 0
    leaders = world.Split(0 if is_leader else MPI.UNDEFINED, world.rank)
    seed_seq = np.random.SeedSequence(seed).spawn(world.size)[world.rank]
    rt = Runtime(world, layout, role, role_comm, node, leaders if is_leader else None, seed_seq,
                 Channels.create(world), np.random.default_rng(seed_seq.spawn(1)[0]))
    rt.use_threads()
    return rt


def startup_timeout(world_size: int) -> float:
    """Seconds to wait for a first message at start-up (first weights, first batch): grows with the job."""
    return 120.0 + 0.5 * world_size
