"""The parameter-server role, written once (GORILA's `ps` shards; A3C's across hosts).

  run_ps          a `ps` rank: serve its slice of the vector (comm.ps.serve_shard) with its own optimizer until
                  every client has said STOP, write its slice and optimizer state as a checkpoint part on
                  request, then tell the lead the number of updates it applied (Tag.STOP on control)
  final_updates   the lead: every ps shard's final update count (once every client has stopped), and
                  the wait for this host's window to hold those versions
  restore         a checkpoint's ps parts joined into whole vectors (any number of shards), for any new split

A checkpoint part `ps-<s>` holds {"w": slice, <optimizer arrays>, "t": steps} with attributes (shard, shards, lo,
hi, updates).
"""

from pathlib import Path

import numpy as np

from drlmpi import checkpoint, lifecycle
from drlmpi.checkpoint import State
from drlmpi.comm.ps import serve_shard
from drlmpi.comm.tags import Tag
from drlmpi.comm.weights import NodeWeights, WeightsPlane
from drlmpi.errors import CheckpointError
from drlmpi.runtime import Runtime, poll, wait
from drlmpi.runtime.wait import PEER_TIMEOUT


def run_ps(rt: Runtime, plane: WeightsPlane, init: np.ndarray, lead: int, clients: int, optimizer: str, lr,
           publish_every: int, run_dir: str, start: dict | None = None, **opt_kwargs) -> int:
    """Serve this rank's shard of the vector; returns the updates it applied.

    init: float32 [n], the whole initial vector (this shard takes its slice); lr: a float or a function of the
    updates applied; start: {"opt": {name: [n] arrays, "t": int}, "version": int} of a resumed run (`restore`).
    """
    s, n_ps = rt.layout.index(rt.rank), len(plane.writers)
    lo, hi = plane.window.bounds[s], plane.window.bounds[s + 1]

    def save(req, w, opt, version) -> dict:  # this shard's slice and optimizer state, a checkpoint part
        rel = checkpoint.part_file(req.id, f"ps-{s}")
        sha = checkpoint.save_part(Path(run_dir) / "checkpoints" / rel, "ps",
                                   {"shard": s, "shards": n_ps, "lo": lo, "hi": hi, "updates": version},
                                   {"w": w, **opt.state()})
        return {f"ps-{s}": {"file": rel, "sha256": sha}}

    if start is not None:
        start = {"opt": {k: v if k == "t" else v[lo:hi] for k, v in start["opt"].items()}, "version": start["version"]}
    _, updates = serve_shard(rt.channels.params, plane.pushes[s], init[lo:hi], clients, optimizer, lr, publish_every,
                             lifecycle.client(rt, lead), save, start, **opt_kwargs)
    final = np.array([updates], np.int64)  # to the lead, which checkpoints the final vector
    wait(rt.channels.control.Isend(final, dest=lead, tag=Tag.STOP), what="the lead to take the final update count")
    return updates


def final_updates(rt: Runtime, life, window: NodeWeights) -> list[int]:
    """Lead: each ps shard's final update count (sent once every client has stopped), then wait until this host's
    window holds those versions; polls `life` meanwhile."""
    control, final, out = rt.channels.control, np.zeros(1, np.int64), []
    for r in rt.layout.ranks("ps"):
        poll(lambda r=r: True if control.Iprobe(r, Tag.STOP) else life.poll(), PEER_TIMEOUT,
             f"parameter-server shard {r}'s final update count")
        control.Recv(final, source=r, tag=Tag.STOP)
        out.append(int(final[0]))
    poll(lambda: True if (window.versions() >= out).all() else None, PEER_TIMEOUT, "the ps shards' final weights")
    return out


def restore(state: State, n: int) -> dict | None:
    """The checkpoint's ps parts as whole vectors: {"w": [n], "opt": {name: [n], "t": int}, "version": int};
    None when it has no ps parts. Parts of another vector length raise CheckpointError."""
    names = sorted((k for k in state.parts if k.startswith("ps-")), key=lambda k: int(k.split("-")[1]))
    if not names:
        return None
    parts = [checkpoint.load_part(state, k, "ps") for k in names]
    whole = {k: np.concatenate([a[k] for _, a in parts]) for k in parts[0][1] if k != "t"}
    if len(whole["w"]) != n:
        raise CheckpointError(f"{state.path}: its parameter-server parts hold {len(whole['w'])} parameters, "
                              f"this run's network {n}")
    opt = {k: v for k, v in whole.items() if k != "w"}
    opt["t"] = max(int(a["t"]) for _, a in parts)
    return {"w": whole.pop("w"), "opt": opt, "version": max(int(at["updates"]) for at, _ in parts)}
