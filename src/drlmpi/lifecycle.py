"""The run lifecycle, written once for every algorithm: checkpoints, resume, stop on a signal.

  optim_state, load_optim_state   an optimizer's state (nets.optim, torch's layout) as arrays and JSON, and back
  snapshot         the lead's state copied into memory: the only pause of training for a checkpoint
  Lifecycle        the lead's checkpoints: asks every other rank (comm.checkpoint), collects their replies
                   (RNG states, part files), and writes the main file in a thread once every part is in
                   place, keeping the newest `keep_checkpoints`
  resume_state     what `--resume PATH|auto` loads (rank 0 checks it; every rank reads what it needs)
  resumed_config   the config a resumed run continues with: the checkpoint's, plus non-structural changes

Timeline of a checkpoint: the lead copies its state (pause), sends CHECKPOINT to every other rank and
trains on; each rank answers at its next safe point (replay and parameter-server shards write their
part files first); the writer thread writes the main file last. The final checkpoint (end of the run,
or a signal) is requested with the LAST flag: actors answer it when they stop acting, the other ranks
when their role ends, so the final checkpoint holds every rank's state at the end.
"""

import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np

from drlmpi import checkpoint, signals
from drlmpi.checkpoint import State
from drlmpi.comm.checkpoint import LAST, SIGNALLED, CheckpointCollector, rng_state, set_rng_state
from drlmpi.errors import CheckpointError, UserError, invariant
from drlmpi.runtime import poll, probe
from drlmpi.runtime.wait import PEER_TIMEOUT

PAUSE = -1  # Lifecycle.signal() once the run reached cfg.pause_at_env_steps: a stop with no signal


def optim_state(opt) -> dict:
    """An optimizer's state (nets.optim's or torch.optim's): {"groups": param groups (JSON-able), "state": {param
    index: {key: array}}}."""
    sd = opt.state_dict()
    return {"groups": [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]],
            "state": {str(i): {k: v.detach().cpu().numpy().copy() for k, v in s.items()}
                      for i, s in sd["state"].items()}}


def load_optim_state(opt, saved: dict) -> None:
    import torch

    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in saved["groups"]]
    opt.load_state_dict({"param_groups": groups, "state": {
        int(i): {k: torch.as_tensor(np.asarray(v)) for k, v in s.items()} for i, s in saved["state"].items()}})


def snapshot(algo: str, cfg, log, counters: dict, nets: dict, optims: dict, gen: np.random.Generator, who: str,
             layout: dict) -> State:
    """The lead's state as arrays in memory: nets {name: module}, optims {name: optimizer}."""
    from drlmpi.config import to_dict
    from drlmpi.nets import state_arrays

    return State(algo=algo, env=cfg.env, config=to_dict(cfg),
                 counters={**counters, "wall_time": log.wall_time()},
                 nets={k: {p: a.copy() for p, a in state_arrays(m).items()} for k, m in nets.items()},
                 optim={k: optim_state(o) for k, o in optims.items()}, rng={who: rng_state(gen)},
                 metrics=log.history(), returns=list(log.returns), layout=layout)


def request_channel(rt, role: str):
    """The channel a role's checkpoint requests travel on: its service loop's, else control."""
    return {"replay": rt.channels.replay, "ps": rt.channels.params}.get(role, rt.channels.control)


def targets(rt, lead: int) -> dict:
    """Every rank but the lead: who -> (rank, the channel its checkpoint requests travel on)."""
    return {f"{role}-{rt.layout.index(r)}": (r, request_channel(rt, role))
            for r, role in enumerate(rt.layout.roles) if r != lead}


def client(rt, lead: int):
    """This rank's side of the checkpoint protocol (comm.checkpoint), with its requests' channel."""
    from drlmpi.comm.checkpoint import CheckpointClient

    return CheckpointClient(rt.channels.control, lead, rt.who, rt.gen, request_channel(rt, rt.role))


def layout_dict(rt) -> dict:
    return {"roles": list(rt.layout.roles), "hosts": list(rt.layout.hosts)}


def protected_ids(cdir: Path, resumed: State | None, next_id: int) -> tuple[range, ...]:
    """The checkpoint ids a run in checkpoints directory `cdir` never prunes: those the checkpoint it resumed from
    protects (kept in every checkpoint, so a later resume of this branch still keeps them), those newer than it
    (another branch's), or, when it did not resume from this directory, every checkpoint already there."""
    ours = resumed is not None and resumed.path is not None and Path(resumed.path).parent.resolve() == cdir.resolve()
    if not ours:
        return (range(0, next_id),) if next_id > 1 else ()
    return tuple(range(lo, hi) for lo, hi in resumed.protected) + ((range(resumed.id + 1, next_id),)
                                                                    if next_id > resumed.id + 1 else ())


class Lifecycle:
    """The lead learner's checkpoints and stop requests."""

    def __init__(self, cfg, log, collector: CheckpointCollector | None, resumed: State | None = None):
        self.cfg, self.log, self.collector = cfg, log, collector
        self.dir = Path(cfg.run_dir) / "checkpoints"
        self.next_id = max(checkpoint.ids_on_disk(self.dir), default=0) + 1  # unique in the run directory forever
        self.protected = protected_ids(self.dir, resumed, self.next_id)
        self.open: dict[int, tuple[Path, State]] = {}
        self.pauses: list[float] = []  # seconds training paused per checkpoint (the state copy)
        self.written: list[Path] = []
        self.final: tuple[int, int] | None = None  # (id, flags) of the LAST checkpoint once asked for
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._write, name="checkpoint-writer", daemon=True)
        self._thread.start()

    # -- when --
    def due(self) -> bool:
        return self.final is None and self.log.checkpoint_due()

    def signal(self) -> int:
        """What asks the run to stop now: the signal (this rank's, or one a rank forwarded), else PAUSE once the run
        log has passed cfg.pause_at_env_steps, else 0. Every role loop ends on it the same way."""
        if (asked := self.asked()) or not getattr(self.cfg, "pause_at_env_steps", 0):
            return asked
        return PAUSE if self.log.steps >= self.cfg.pause_at_env_steps else 0

    def asked(self) -> int:
        """The signal that asks the job to stop (this rank's, or one a rank forwarded), else 0."""
        if self.collector:
            self.collector.poll()
            if self.collector.signals:
                return next(iter(self.collector.signals.values()))
        return signals.asked()

    # -- what --
    def begin(self, env_steps: int, make_state, last: bool = False, parts=None,
              final_row: tuple[int, dict] | None = None) -> None:
        """Copy the state (make_state() -> State; the pause), ask every other rank, write when complete.
        last: the final checkpoint (flag LAST; SIGNALLED too if a signal asked for the stop).
        parts(ckpt_id, env_steps) -> {name: {file, sha256}}: part files this rank writes itself (serial runs).
        final_row: (updates, metrics) of the run's last metrics row (required with last), written before the final
        state is copied, so the final checkpoint's history ends with it."""
        ckpt_id, flags = self.ask_last(env_steps, actors_only=True) if last else (self._new_id(), 0)
        if last:
            invariant(final_row is not None, "the final checkpoint comes with the run's last metrics row")
            self.log.write_row(env_steps, *final_row)
        t0 = time.perf_counter()
        state = make_state()
        if parts:
            state.parts.update(parts(ckpt_id, env_steps))
        self.pauses.append(time.perf_counter() - t0)
        self.log.checkpoint_started()
        state.id, state.protected = ckpt_id, [[r.start, r.stop] for r in self.protected]
        self.open[ckpt_id] = (self.dir / checkpoint.name_of(env_steps, ckpt_id), state)
        if self.collector:
            self.collector.request(ckpt_id, env_steps, flags)  # (the targets that have no LAST yet)
        self.poll()

    def last_reports(self, stats, comm, updates: int) -> None:
        """A lead at the end: wait politely for every actor's last reports and STOP on the reports channel `comm`."""
        while not stats.all_done:
            probe(comm, what="the actors' last reports")
            stats.drain(updates, self.log.episode)
            self.poll()

    def stop_actors(self, env_steps: int) -> tuple[int, int]:
        """Ask the actors for the final checkpoint: they stop acting and answer it."""
        return self.ask_last(env_steps, actors_only=True)

    def ask_last(self, env_steps: int, actors_only: bool = False) -> tuple[int, int]:
        """Send the final checkpoint's request (LAST) to the actors, or to every rank not asked yet; returns its
        (id, flags). Ranks that stop by a STOP of their clients must have it before that STOP."""
        if self.final is None:
            self.final = (self._new_id(), LAST | (SIGNALLED if self.asked() else 0))
        if self.collector:
            only = [w for w in self.collector.targets if w.startswith("actor-")] if actors_only else None
            self.collector.request(self.final[0], env_steps, self.final[1], only=only)
        return self.final

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def poll(self) -> None:
        """Hand every checkpoint whose replies are all in to the writer thread."""
        if self.collector:
            self.collector.poll()
        for ckpt_id in list(self.open):
            if self.collector and not self.collector.complete(ckpt_id):
                continue
            path, state = self.open.pop(ckpt_id)
            for who, reply in (self.collector.take(ckpt_id) if self.collector else {}).items():
                state.rng[who] = {"numpy": reply["numpy"], "torch": reply["torch"]}
                state.parts.update(reply["parts"])
            self._queue.put((path, state))

    def finish(self) -> Path | None:
        """Wait for every open checkpoint's replies and for the writer; returns the last checkpoint written."""
        def missing():
            ids = sorted(self.open)
            got = self.collector.pending.get(ids[0], {}) if self.collector else {}
            return [w for w in (self.collector.targets if self.collector else ()) if w not in got][:5]

        poll(lambda: self.poll() or (None if self.open else True), PEER_TIMEOUT,
             f"checkpoint replies (first missing: {', '.join(missing()) if self.open else ''})", max_sleep=0.01)
        if self.collector:
            self.collector.finish()
        self._queue.put(None)
        poll(lambda: None if self._thread.is_alive() else True, PEER_TIMEOUT, "the checkpoint writer", 0.01)
        if self.stopped_by_signal():
            signals.stopping = True
        return self.written[-1] if self.written else None

    def close(self, env_steps: int, updates: int, summary: dict | None = None) -> dict:
        """The lead's end of a run, after begin(last=True): wait for the last checkpoint and close the run log;
        returns the run's summary (what the CLI prints), with `summary`'s entries added."""
        path = self.finish()
        self.log.close(env_steps)
        return {"env_steps": env_steps, "updates": updates, "recent_return": self.log.recent_return,
                "checkpoint": str(path), "seconds": self.log.wall_time(),
                "checkpoint_pause_s": max(self.pauses, default=0.0), "stopped_by_signal": self.stopped_by_signal(),
                **(summary or {})}

    def stopped_by_signal(self) -> bool:
        return self.final is not None and bool(self.final[1] & SIGNALLED)

    def _write(self) -> None:
        while (item := self._queue.get()) is not None:
            path, state = item
            checkpoint.save(path, state)
            self.written.append(path)
            checkpoint.prune(self.dir, self.cfg.keep_checkpoints, self.protected, live=set(list(self.open)))


# ---- resume ----------------------------------------------------------------------------------------------


def resume_state(arg: str, run_dir: str) -> State | None:
    """The checkpoint `--resume` names: a file or run directory, or `auto` (run_dir's complete checkpoint written
    last, older ones tried when it is damaged, None when there is none). Raises CheckpointError."""
    if arg != "auto":
        return checkpoint.load(arg)
    if not run_dir:
        raise UserError("--resume auto needs --run-dir (the run directory to continue)")
    for path in reversed(checkpoint.main_files(Path(run_dir) / "checkpoints")):
        try:
            return checkpoint.load(path)
        except CheckpointError as e:
            print(f"drlmpi: skipping {e}", flush=True)
    return None


def check_named_modules(module, state: State, sets, trust: bool) -> None:
    """Files are data: a config key that names an algorithm (PBT's `member`) may hold a module path in a checkpoint
    only when the user names it again (--set key=...) or passes --trust: importing it runs that module's code."""
    from drlmpi import algos, config

    given = {s.partition("=")[0].strip().replace("-", "_") for s in sets}
    for key in config.module_keys(module.Config):
        value = state.config.get(key)
        if isinstance(value, str) and value not in algos.ALGOS and key not in given and not trust:
            raise CheckpointError(f"{state.path}: its {key} {value!r} names a module: pass --set {key}={value} to "
                                  "import it, or --trust")


def resumed_config(module, algo: str, state: State, toml_path, sets, trust: bool = False, **flags):
    """The checkpoint's config with the given changes; refuses another algorithm or a structural change."""
    from drlmpi import config

    if state.algo != algo:
        raise CheckpointError(f"{state.path}: a checkpoint of {state.algo}, not {algo}")
    flags = {k: v for k, v in flags.items() if v is not None}
    check_named_modules(module, state, sets, trust)
    cfg = config.build(module.Config, toml_path, sets, base=state.config, **flags)
    new = config.to_dict(cfg)
    for key in config.structural_keys(module.Config):  # (the networks' and stored data's shapes)
        if key in state.config and _norm(new.get(key)) != _norm(state.config[key]):
            raise CheckpointError(f"{state.path}: cannot resume with {key}={new.get(key)!r} (the checkpoint has "
                                  f"{state.config[key]!r}; it fixes the networks' shapes)")
    return cfg


def _norm(v):
    return list(v) if isinstance(v, tuple | list) else v


def restore_learner(state: State, nets: dict, optims: dict) -> int:
    """Load networks {name: module} and optimizers {name: nets.optim optimizer} from a checkpoint; returns its
    update count. A mismatch (another network shape) raises CheckpointError."""
    from drlmpi.nets import load_arrays

    try:
        for name, module in nets.items():
            load_arrays(module, state.nets[name])
        for name, opt in optims.items():
            load_optim_state(opt, state.optim[name])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{state.path}: does not match this run's networks ({type(e).__name__}: {e})") from None
    return int(state.counters.get("updates", 0))


def seed_rank(rt, state: State | None) -> None:
    """This rank's generators (torch's, where the rank imported torch, and rt.gen) seeded from the run's seed and the
    rank, then restored from the checkpoint if it holds this rank's: what every role does once its planes are set
    up."""
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(rt.torch_seed())
    restore_rng(state, rt.who, rt.gen)


def summary_of(net, updates: int) -> dict:
    """A learner's summary: its update count and the SHA-256 of its flat weights (equal learners, equal hashes)."""
    import hashlib

    from drlmpi.nets import flat_params

    return {"updates": updates, "weights_sha256": hashlib.sha256(flat_params(net).tobytes()).hexdigest()}


def state_sha256(modules: dict) -> str:
    """The SHA-256 of every module's state (parameters and buffers: running statistics too), by name."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(modules):
        for key, value in sorted(modules[name].state_dict().items()):
            h.update(f"{name}.{key}".encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def restore_rng(state: State | None, who: str, gen: np.random.Generator) -> bool:
    """Set this rank's generators from the checkpoint, if it holds `who`'s; True if it did."""
    if state is not None and who in state.rng:
        set_rng_state(gen, state.rng[who])
        return True
    return False
