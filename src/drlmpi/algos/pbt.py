"""Population-based training (Jaderberg et al. 2017) in one MPI job: every member any drlmpi algorithm on its own
group of ranks; members copy better members' state and perturb their hyperparameters.

  mpiexec -n 4  drlmpi --algo pbt --env CartPole-v1                                   (4 DQN members, 1 rank each)
  mpiexec -n 16 drlmpi --algo pbt --set member=apex --set population=4 --env CartPole-v1   (4 Ape-X members of 4)

The world splits into `population` groups of N / P consecutive ranks (a sub-communicator each); a member runs its
algorithm's own layout on its group (`--layout` lays out every member). Generations are synchronous:

  train    every member runs its algorithm until its next ready point: `pause_at_env_steps`, a multiple of
           `ready_every` env steps of that member (its schedules still span total_env_steps), where it writes its
           full-state checkpoint (member-<m>/checkpoints/) and its ranks load it back: the state it goes on from.
  rank     world rank 0 gathers each member's score, the mean return of its latest `rank_episodes` episodes, and
           writes the population checkpoint: the population's history and every member's hyperparameters, each
           member's checkpoint as a verified part, and its own RNG (checkpoints/ckpt-*.h5 of algo "pbt").
  exploit  each member of the bottom `quantile` copies one of the top quantile (ties too): networks,
           optimizer state and recent returns, from the top member's rank 0 to the bottom one's through buffer
           messages (comm.states), then broadcast over the member's ranks. It keeps its counters, RNG and replay.
  explore  it takes the top member's hyperparameters, each then perturbed x0.8 / x1.2 or, with probability
           `resample_p`, drawn again from its prior (ops.pbt). The optimizer's lr follows a searched `lr`.

With `exploit=false` the same members train side by side with their starting values: the baseline. The searchable
hyperparameters are the `SEARCH` declarations of the member's Config (config.Hparam; `drlmpi config --algo X`
lists the keys): at least lr and gamma, and eps or entropy where the algorithm has them.

Run directory: member-<m>/ (each member's own run dir: config.json, metrics.csv, checkpoints), population.csv (a
row per member and generation: env steps, score, hyperparameters, parent, copy ms), lineage.jsonl (every exploit
with its explore), checkpoints/. `drlmpi eval RUN_DIR` evaluates the member that scored best at the end; `drlmpi
report RUN_DIR` plots the population's scores and hyperparameters.

Signals: each member stops at its next safe point with a final checkpoint (its algorithm's lifecycle), then the job
writes the population checkpoint and exits 75; a member whose ranks got no signal trains on to its ready point
first. `--resume auto` continues the interrupted generation (members resume from their checkpoints, onto any
number of ranks that splits into the population), or, from a ready point, makes that point's decisions again with
the restored RNG: the same ones.

Messages (the world's control channel; each member's planes are its algorithm's own):
  tag / call            from -> to                                 payload                                   when
  (gather_json)         every rank -> world rank 0                 stop flag; member root: score, steps,     ready
                                                                   updates, checkpoint path, copy ms
  (bcast_json)          world rank 0 -> every rank                 decision: stop, done; pairs, values       ready
  (allgather_json)      a member's ranks -> each other             its checkpoint path (from its lead)       ready
  STATE (uint8) x2      top member's rank 0 -> bottom member's     JSON header, then the body of arrays      exploit
                        rank 0
  barrier + Bcast       bottom member's rank 0 -> its ranks        sizes, header, body (bcast_state)         exploit
"""

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from drlmpi import algos, checkpoint, config, lifecycle, runtime
from drlmpi.checkpoint import State
from drlmpi.comm import states
from drlmpi.comm.checkpoint import rng_state, set_rng_state
from drlmpi.comm.control import allgather_json, bcast_json, gather_json
from drlmpi.comm.tags import Tag
from drlmpi.config import Common, Hparam, opt, require_at_least
from drlmpi.errors import CheckpointError, UserError
from drlmpi.ops import pbt as ops
from drlmpi.runtime import RoleSpec, Runtime, wait_all
from drlmpi.runtime.context import usable_cores

LAYOUT = RoleSpec(min_actors=1, serial_ok=False)  # the world's; each member lays out its own group (check_layout)
SPLITS_WORLD = True  # the CLI prints no world layout table: run_population prints the members'
MEMBER_KEEP = 1_000_000  # a member's keep_checkpoints: the controller prunes them instead (prune_members)
__all__ = ["LAYOUT", "ROLES", "Config", "check_layout", "policy_state"]


@dataclass
class Config(Common):
    member: str = opt("dqn", "the members' algorithm (any --algo name or module path); total_env_steps counts each "
                             "member's env steps, and it and num_envs at 0 take the member's defaults", True, True)
    population: int = opt(4, "members: the world splits into this many groups of N / P ranks", True)
    ready_every: int = opt(10_000, "env steps of a member between exploit/explore rounds")
    search: str = opt("lr", "searched hyperparameters, comma-separated: name, or name:lo:hi to set its prior "
                            "(names: `drlmpi config --algo MEMBER` lists them)", True)
    init: str = opt("spread", "starting values: spread (evenly over each prior, ends included), random, or lists "
                              "name=v0:v1:...,name2=... (one value per member)")
    exploit: bool = opt(True, "exploit and explore at ready points (false: the same population as a baseline)")
    quantile: float = opt(0.25, "share of members in the bottom (and top) group at a ready point")
    resample_p: float = opt(0.25, "explore: probability that a value is drawn again from its prior")
    perturb: tuple[float, ...] = opt((0.8, 1.2), "explore: the factors a value is multiplied by (one drawn)")
    rank_episodes: int = opt(10, "a member's score: the mean return of its latest this-many episodes")
    member_set: str = opt("", "the members' other config keys, as `key=value;key=value` (like --set)")
    ready_timeout: float = opt(86_400.0, "seconds a member waits at a ready point for the others")

    DEFAULTS: ClassVar[dict] = {"total_env_steps": 0, "num_envs": 0}
    POSITIVE: ClassVar[tuple[str, ...]] = ("population", "ready_every", "rank_episodes")

    def check_own(self):
        require_at_least(self, ("num_envs",), least=0)
        if self.member in ("pbt", __name__):
            raise UserError("config: member cannot be pbt itself")
        if not 0 < self.quantile <= 0.5:
            raise UserError(f"config: quantile must be in (0, 0.5], got {self.quantile}")
        if not 0 <= self.resample_p <= 1:
            raise UserError(f"config: resample_p must be in [0, 1], got {self.resample_p}")
        if not self.perturb or min(self.perturb) <= 0:
            raise UserError(f"config: perturb needs factors > 0, got {self.perturb}")


def validate(cfg: Config) -> Config:
    """Rank 0, before the job starts: the member's config builds and validates (its own `validate`, once), the
    search space and starting values are sound; returns the config to run, with the member's default
    total_env_steps filled in where it was 0."""
    module = algos.get(cfg.member)
    base = member_config(cfg, 0, {}, 0)  # the member's own checks (and its default step count)
    if hasattr(module, "validate"):
        module.validate(base)
    space_of(cfg)
    initial_values(cfg, np.random.default_rng(0))  # refuses a bad `init` before any rank starts
    return dataclasses.replace(cfg, total_env_steps=cfg.total_env_steps or base.total_env_steps)


# ---- the population's configuration ----------------------------------------------------------------------


def space_of(cfg: Config) -> dict[str, Hparam]:
    """The searched hyperparameters: cfg.search's names with the member's priors (or the ranges given)."""
    declared = config.search_space(algos.get(cfg.member).Config)
    out = {}
    for item in filter(None, (s.strip() for s in cfg.search.split(","))):
        name, *rng = item.split(":")
        if name not in declared:
            raise UserError(f"config: search: {cfg.member} has no searchable '{name}' (it has: "
                            f"{', '.join(declared) or 'none'})")
        hp = declared[name]
        if rng:
            try:
                lo, hi = map(float, rng)
            except ValueError:
                raise UserError(f"config: search: expected name:lo:hi, got '{item}'") from None
            if not lo < hi or (hp.scale == "log" and lo <= 0) or (hp.scale == "log1m" and hi >= 1):
                raise UserError(f"config: search: bad prior {lo:g}..{hi:g} for {name} ({hp.scale} scale)")
            hp = Hparam(hp.keys, lo, hi, hp.scale)
        out[name] = hp
    return out


def initial_values(cfg: Config, rng: np.random.Generator) -> list[dict[str, float]]:
    """Each member's starting hyperparameters (cfg.init)."""
    space = space_of(cfg)
    if cfg.init in ("spread", "random"):
        return ops.initial(space, cfg.population, rng, spread=cfg.init == "spread")
    out: list[dict[str, float]] = [{} for _ in range(cfg.population)]
    for item in filter(None, (s.strip() for s in cfg.init.split(","))):
        name, sep, vals = item.partition("=")
        try:
            values = [float(v) for v in vals.split(":")]
        except ValueError:
            values = []
        if not sep or name not in space or len(values) != cfg.population:
            raise UserError(f"config: init: expected spread, random or name=v0:...:v{cfg.population - 1} for a "
                            f"searched name, got '{item}'")
        for m, v in enumerate(values):
            out[m][name] = v
    missing = [n for n in space if n not in out[0]]
    if missing:
        raise UserError(f"config: init gives no values for {', '.join(missing)}")
    return out


def member_seed(seed: int, m: int) -> int:
    return int(np.random.SeedSequence([seed, m]).generate_state(1)[0] % 2**31)


def member_config(cfg: Config, m: int, values: dict[str, float], pause_at: int, threads: int = 0):
    """Member m's config: its algorithm's defaults, member_set, the population's run settings, `values` (a tied key
    keeps its default ratio to the first, e.g. lr_final to lr) and its next ready point."""
    module = algos.get(cfg.member)
    sets = [s.strip() for s in cfg.member_set.split(";") if s.strip()]
    flags = {"env": cfg.env, "seed": member_seed(cfg.seed, m), "run_dir": str(Path(cfg.run_dir) / f"member-{m}"),
             "checkpoint_every": cfg.checkpoint_every, "keep_checkpoints": MEMBER_KEEP,
             "checkpoint_replay": cfg.checkpoint_replay, "log_every": cfg.log_every, "device": cfg.device,
             "torch_threads": cfg.torch_threads or threads, "pause_at_env_steps": pause_at, "wandb": cfg.wandb}
    if cfg.total_env_steps:
        flags["total_env_steps"] = cfg.total_env_steps
    if cfg.num_envs:
        flags["num_envs"] = cfg.num_envs
    if cfg.layout:
        flags["layout"] = cfg.layout
    try:
        base = config.build(module.Config, None, sets, **flags)
        space = config.search_space(module.Config)
        for name, v in values.items():
            first, *tied = space[name].keys
            default = getattr(base, first)
            sets = sets + [f"{first}={v!r}"] + [f"{k}={getattr(base, k) * v / default if default else 0.0!r}"
                                                for k in tied]
        return config.build(module.Config, None, sets, **flags)
    except UserError as e:
        raise UserError(f"pbt member {cfg.member}: {e}") from None


def member_spec(cfg: Config, module) -> RoleSpec:
    """The member algorithm's roles, with `--layout`'s counts."""
    if not cfg.layout:
        return module.LAYOUT
    return module.LAYOUT.with_overrides(runtime.parse_layout_arg(cfg.layout), cfg.member)


def check_layout(layout, cfg: Config) -> None:
    """Every member's group must hold its algorithm's layout: one line, exit 2, before any role starts."""
    n, p = layout.size, cfg.population
    if n % p:
        raise UserError(f"pbt: {n} ranks do not split into {p} members (use a multiple of {p} ranks)")
    module, k = algos.get(cfg.member), n // p
    spec = member_spec(cfg, module)
    for m in range(p):
        try:
            member = runtime.build_layout(k, spec, cfg.member, layout.hosts[m * k:(m + 1) * k], (1,) * k)
        except UserError as e:
            raise UserError(f"pbt: member {m} on {k} rank(s): {e}") from None
        algos.check_roles(module, member, cfg.member)
        if hasattr(module, "check_layout"):
            module.check_layout(member, member_config(cfg, m, {}, 0))


# ---- the population's records ----------------------------------------------------------------------------

BASE_COLUMNS = ["generation", "member", "env_steps", "score", "parent", "copy_ms", "updates"]


def columns(cfg: Config) -> list[str]:
    return BASE_COLUMNS + [f"hp_{n}" for n in space_of(cfg)]


def write_records(run_dir: Path, cols: list[str], rows: list[dict]) -> None:
    """population.csv and lineage.jsonl from the rows (rewritten whole: they are small)."""
    lines = [",".join(cols)] + [",".join(_fmt(r[c]) for c in cols) for r in rows]
    (run_dir / "population.csv").write_text("\n".join(lines) + "\n")
    at = {(int(r["generation"]), int(r["member"])): r for r in rows}
    events = []
    for r in rows:
        g, m, parent = int(r["generation"]), int(r["member"]), int(r["parent"])
        if parent < 0 or (g - 1, m) not in at or (g - 1, parent) not in at:
            continue
        before, top = at[(g - 1, m)], at[(g - 1, parent)]
        hp = [c[3:] for c in cols if c.startswith("hp_")]
        events.append({"generation": g, "env_steps": int(before["env_steps"]), "event": "exploit+explore",
                       "member": m, "from": parent, "score": before["score"], "from_score": top["score"],
                       "copy_ms": r["copy_ms"], "hparams_before": {n: before[f"hp_{n}"] for n in hp},
                       "copied": {n: top[f"hp_{n}"] for n in hp}, "hparams": {n: r[f"hp_{n}"] for n in hp}})
    (run_dir / "lineage.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))  # exact: lineage and CSV agree


def rows_of(metrics: dict) -> list[dict]:
    n = len(metrics.get("generation", ()))
    return [{c: float(a[i]) for c, a in metrics.items()} for i in range(n)]


def save_population(gen: np.random.Generator, cfg: Config, ckpt_id: int, g: int, ready: bool, values, parents,
                    reports, rows, roles, wall: float, protected: tuple[range, ...] = ()) -> Path:
    """World rank 0: the population checkpoint (member checkpoints as parts, verified on load). reports[m]: member m's
    env_steps, updates, checkpoint path and copy_ms; rows: the history (columns(cfg)); roles: layout_dict-like."""
    cdir = Path(cfg.run_dir) / "checkpoints"
    steps = min(r["env_steps"] for r in reports)
    counters = {"env_steps": steps, "generation": g, "ready": int(ready), "wall_time": wall,
                "updates": sum(r["updates"] for r in reports),
                **{f"parent.{m}": parents[m] for m in range(len(reports))},
                **{f"copy_ms.{m}": r["copy_ms"] for m, r in enumerate(reports)},
                **{f"hp.{m}.{n}": v for m, vs in enumerate(values) for n, v in vs.items()}}
    parts = {f"member-{m}": {"file": os.path.relpath(r["checkpoint"], cdir),
                             "sha256": checkpoint.digest(r["checkpoint"])} for m, r in enumerate(reports)}
    cols = columns(cfg)
    state = State(algo="pbt", env=cfg.env, config=config.to_dict(cfg), counters=counters,
                  rng={"pbt": rng_state(gen)},
                  metrics={c: np.array([r[c] for r in rows], np.float64) for c in cols}, layout=roles, parts=parts,
                  id=ckpt_id, protected=[[r.start, r.stop] for r in protected])
    path = checkpoint.save(cdir / checkpoint.name_of(steps, ckpt_id), state)
    checkpoint.prune(cdir, cfg.keep_checkpoints, protected)
    prune_members(cdir)
    return path


def prune_members(cdir: Path) -> None:
    """Delete the member checkpoints that no kept population checkpoint links, but none newer than the newest one
    linked (a member's checkpoints of the generation under way). Members prune nothing themselves (MEMBER_KEEP)."""
    linked: dict[Path, set[int]] = {}  # a member's checkpoints directory -> the ids linked in it
    for main in checkpoint.main_files(cdir):
        try:
            state = checkpoint.load(main, parts=False)
        except CheckpointError:  # (a damaged one links nothing usable)
            continue
        for name in state.parts:
            path = Path(os.path.normpath(state.part_path(name)))
            linked.setdefault(path.parent, set()).add(checkpoint.id_of(path))
    for mdir, ids in linked.items():
        for main in checkpoint.main_files(mdir):
            if checkpoint.id_of(main) not in ids and checkpoint.id_of(main) < max(ids):
                main.unlink(missing_ok=True)  # main first: a half-pruned checkpoint is never mistaken for one
        checkpoint.prune(mdir, MEMBER_KEEP, protected=range(0), live=set())  # (their parts and temporary files)


# ---- one rank's run --------------------------------------------------------------------------------------


def run_population(rt: Runtime, cfg: Config, planes: None, resumed: State | None) -> dict | None:
    """Every rank: split into members, train generation after generation, exploit and explore at ready points;
    returns the population's summary on world rank 0."""
    from drlmpi import signals

    pop = Population(rt, cfg, resumed)
    while True:
        if pop.at_ready:
            pop.at_ready = False  # resumed at a ready point: decide again, as the run did
            pop.reports_of_rows()
        elif pop.train()["done"]:
            break
        pop.exploit_and_explore()
    if pop.decision["stop"]:
        signals.stopping = True  # every rank: the job exits with the requeue code
    pop.comm.Free()
    return pop.summary() if pop.lead0 else None


class Population:
    """One rank's part in the population: its member m of p (k ranks each, on the sub-communicator `comm` and
    the member runtime `mrt`), every member's hyperparameters (`values`) and parent, the `generation`, and on
    world rank 0 (`lead0`, the controller) the records, reports and population checkpoints."""

    def __init__(self, rt: Runtime, cfg: Config, resumed: State | None):
        from drlmpi.runtime import set_role

        self.rt, self.cfg = rt, cfg
        self.module, self.space = algos.get(cfg.member), space_of(cfg)
        self.p, self.k = cfg.population, rt.size // cfg.population
        self.m = rt.rank // self.k
        self.comm = rt.world.Split(self.m, rt.rank)  # this member's ranks
        self.root = self.comm.rank == 0  # the member's rank 0: it reports, and sends or receives states
        self.lead0 = rt.rank == 0  # the population's controller
        self.threads = max(1, usable_cores() // rt.node.size)  # the host's cores shared by every member's ranks there
        self.mrt = runtime.start(member_spec(cfg, self.module), cfg.member, member_seed(cfg.seed, self.m), self.comm,
                                 cfg.torch_threads or self.threads)
        set_role(f"{self.mrt.role} of member {self.m}")
        self.roles = allgather_json(rt.world, (self.mrt.role, self.mrt.layout.hosts[self.comm.rank]),
                                    "every member's start")
        if self.lead0:
            print(f"pbt: {self.p} {cfg.member} member(s) of {self.k} rank(s); searching "
                  f"{', '.join(self.space) or 'nothing'}{'' if cfg.exploit else ' (exploit and explore off)'}\n" +
                  (self.mrt.layout.table() if self.k > 1 else ""), flush=True)
        self.start = time.monotonic() - (resumed.counters.get("wall_time", 0.0) if resumed else 0.0)
        self.generations = math.ceil(cfg.total_env_steps / cfg.ready_every)
        self.cols, self.rows = columns(cfg), rows_of(resumed.metrics) if resumed else []
        self.reports, self.last, self.decision = [], None, {"stop": False, "done": False}
        self.resumed, self.protected = resumed, None
        self.resume(resumed)
        if self.lead0:
            Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
            write_records(Path(cfg.run_dir), self.cols, self.rows)

    def resume(self, resumed: State | None) -> None:
        """Where the population starts: a checkpoint's generation, values, parents and member checkpoints, or the
        starting values (rank 0's draw) at generation 0."""
        cfg, p = self.cfg, self.p
        self.parents, self.copy_ms = [-1] * p, 0.0  # whom each member copied this generation, this member's ms
        if not resumed:
            self.generation, self.at_ready, self.mine = 0, False, None
            self.values = bcast_json(self.rt.world, initial_values(cfg, self.rt.gen) if self.lead0 else None,
                                     what="the starting values")
            return
        counters = resumed.counters
        self.generation, self.at_ready = int(counters["generation"]), bool(counters["ready"])
        self.values = [{n: float(counters[f"hp.{j}.{n}"]) for n in self.space} for j in range(p)]
        if self.lead0:
            set_rng_state(self.rt.gen, resumed.rng["pbt"])
        self.mine = checkpoint.load(member_path(resumed, self.m), parts=self.root)
        if not self.at_ready:
            self.parents = [int(counters.get(f"parent.{j}", -1)) for j in range(p)]
            self.copy_ms = float(counters.get(f"copy_ms.{self.m}", 0.0))

    def reports_of_rows(self) -> None:
        """A population resumed at a ready point: its reports are the records' scores of that generation."""
        scores = {int(r["member"]): r["score"] for r in self.rows if int(r["generation"]) == self.generation}
        self.reports = [{"score": scores[j]} for j in range(self.p)]

    def train(self) -> dict:
        """Every member trains to its next ready point (or a signal), loads its own checkpoint back and reports
        its score to rank 0, which records the generation; returns the decision {stop, done} every rank gets."""
        from drlmpi import signals

        cfg, m = self.cfg, self.m
        pause_at = min(cfg.total_env_steps, (self.generation + 1) * cfg.ready_every)
        mcfg = member_config(cfg, m, self.values[m], pause_at, self.threads)
        summary = algos.run(self.module, self.mrt, mcfg, self.mine)
        paths = allgather_json(self.comm, (summary or {}).get("checkpoint"),
                               f"member {m}'s ranks at the end of its generation", cfg.ready_timeout)
        path = next((p for p in paths if p), None)  # the member's lead wrote it
        if path is None:
            raise RuntimeError(f"member {m} ({cfg.member}) ended without a checkpoint")
        self.mine = mine = checkpoint.load(path, parts=self.root)
        got = mine.returns[-cfg.rank_episodes:]
        stop = bool(signals.stopping or signals.asked())
        report = {"member": m, "score": float(np.mean(got)) if got else math.nan, "env_steps": mine.env_steps,
                  "updates": int(mine.counters.get("updates", 0)), "checkpoint": path, "copy_ms": self.copy_ms,
                  "reached": mine.env_steps >= pause_at or (pause_at >= cfg.total_env_steps and not stop)
                  } if self.root else None
        gathered = gather_json(self.rt.world, (stop, report), 0, "every member at its ready point", cfg.ready_timeout)
        decision = self.record(gathered) if self.lead0 else None
        self.decision = bcast_json(self.rt.world, decision, what="the population's decision")
        return self.decision

    def record(self, gathered: list) -> dict:
        """Rank 0: the members' reports into the records (once every member reached the ready point) and a
        population checkpoint; whether to stop (a signal) and whether the run is done."""
        cfg, g = self.cfg, self.generation
        self.reports = reports = [r for _, r in gathered if r is not None]
        stop = any(s for s, _ in gathered)
        ready = all(r["reached"] for r in reports)  # (also when a signal came after every member got there)
        if ready:
            self.rows += [{"generation": g, "member": r["member"], "env_steps": r["env_steps"], "score": r["score"],
                           "parent": self.parents[r["member"]], "copy_ms": r["copy_ms"], "updates": r["updates"],
                           **{f"hp_{n}": v for n, v in self.values[r["member"]].items()}} for r in reports]
            write_records(Path(cfg.run_dir), self.cols, self.rows)
        cdir = Path(cfg.run_dir) / "checkpoints"
        ckpt_id = max(checkpoint.ids_on_disk(cdir), default=0) + 1  # unique forever
        if self.protected is None:  # (another branch's population checkpoints: lifecycle.protected_ids)
            self.protected = lifecycle.protected_ids(cdir, self.resumed, ckpt_id)
        self.last = save_population(self.rt.gen, cfg, ckpt_id, g, ready, self.values, self.parents, reports,
                                    self.rows, roles_dict(self.roles), time.monotonic() - self.start, self.protected)
        print(f"pbt generation {g + 1}/{self.generations}: scores " + ", ".join(f"{r['score']:.1f}" for r in reports)
              + f"; best member {ops.best([r['score'] for r in reports])}", flush=True)
        return {"stop": stop, "done": stop or g + 1 >= self.generations or
                all(r["env_steps"] >= cfg.total_env_steps for r in reports)}

    def exploit_and_explore(self) -> None:
        """Rank 0 picks the bottom members that copy a top one and their explored values; the copies travel root
        to root (`exploit`); every rank moves to the next generation."""
        cfg, values, space = self.cfg, self.values, self.space
        decision = None
        if self.lead0:
            scores = [r["score"] for r in self.reports]
            pairs = ops.exploit_pairs(scores, cfg.quantile, self.rt.gen) if cfg.exploit else []
            new = [dict(v) for v in values]
            for b, t in pairs:
                new[b] = ops.explore(values[t], space, self.rt.gen, cfg.resample_p, cfg.perturb)
                print(f"pbt: member {b} ({scores[b]:.1f}) copies member {t} ({scores[t]:.1f}); "
                      + ", ".join(f"{n} {values[t][n]:.4g} -> {new[b][n]:.4g}" for n in space), flush=True)
            decision = {"pairs": pairs, "values": new}
        decision = bcast_json(self.rt.world, decision, what="the exploit decisions")
        self.copy_ms = exploit(self.rt, self.comm, self.m, self.k, self.mine, decision["pairs"], values,
                               decision["values"], space)
        self.parents = [-1] * self.p
        for b, t in decision["pairs"]:
            self.parents[b] = t
        self.values = decision["values"]
        self.generation += 1

    def summary(self) -> dict:
        """Rank 0: the population's summary (what the CLI prints)."""
        reports, best = self.reports, ops.best([r["score"] for r in self.reports])
        return {"env_steps": sum(r["env_steps"] for r in reports), "updates": sum(r["updates"] for r in reports),
                "recent_return": reports[best]["score"], "checkpoint": str(self.last),
                "seconds": time.monotonic() - self.start, "best_member": best, "generations": self.generation + 1,
                "stopped_by_signal": self.decision["stop"]}


def exploit(rt: Runtime, comm, m: int, k: int, mine: State, pairs, old, new, space) -> float:
    """Every rank: top members' roots send their state to the bottom members' roots, which share it with their
    ranks; returns the ms this member's copy took (0 if it copied none)."""
    reqs, packed, took = [], None, 0.0
    for b, t in pairs:
        if m == t and comm.rank == 0:
            packed = packed or states.pack(mine)
            reqs += states.send_state(rt.channels.control, b * k, Tag.STATE, *packed)
    for b, t in pairs:
        if m != b:
            continue
        t0 = time.perf_counter()
        header = body = None
        if comm.rank == 0:
            header, body = states.recv_state(rt.channels.control, t * k, Tag.STATE, f"member {t}'s state")
        if comm.size > 1:
            header, body = states.bcast_state(comm, 0, header, body)
        states.unpack(header, body, mine)
        if "lr" in space and old[t]["lr"] > 0:  # the copied optimizer's groups follow the new lr
            for o in mine.optim.values():
                for group in o["groups"]:
                    if "lr" in group:
                        group["lr"] *= new[b]["lr"] / old[t]["lr"]
        took = 1e3 * (time.perf_counter() - t0)
    wait_all(reqs, what="the bottom members' receipt of a state")
    return took


def member_path(state: State, m: int) -> Path:
    """Member m's checkpoint that a population checkpoint links."""
    return Path(os.path.normpath(state.part_path(f"member-{m}")))


def roles_dict(roles) -> dict:
    return {"roles": [r for r, _ in roles], "hosts": [h for _, h in roles]}


# ---- evaluation ------------------------------------------------------------------------------------------


def policy_state(state: State) -> State:
    """The checkpoint `drlmpi eval` and `record` use for a population: its best-scoring member's at the end."""
    rows = rows_of(state.metrics)
    if not rows:
        raise CheckpointError(f"{state.path}: no generation has finished yet: evaluate a member's run dir instead")
    g = max(int(r["generation"]) for r in rows)
    last = [r for r in rows if int(r["generation"]) == g]
    top = last[ops.best([r["score"] for r in last])]
    return checkpoint.load(member_path(state, int(top["member"])))


ROLES = {"actor": run_population}  # every rank of the world: a member's rank (its own role inside the member)
