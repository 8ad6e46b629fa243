"""The `drlmpi` command.

  drlmpi [train] --algo A --env E [--config run.toml] [--set key=value ...] [--total-env-steps N]
                 [--seed S] [--run-dir D] [--layout learner=1,...] [--resume PATH|auto]
  drlmpi eval PATH [--episodes K] [--json] [--env E] [--trust]
                                                PATH: a checkpoint file or a run directory
  drlmpi inspect PATH [--json]                   what a checkpoint holds (PATH: a file or a run directory)
  drlmpi report RUN_DIR [RUN_DIR ...] [--out D]  PNG figures and summary.md of runs (overlaid)
  drlmpi record --env E (--checkpoint PATH | --policy module:function) --episodes K --out FILE.h5 [--seed S]
                [--epsilon P] [--trust]         demonstrations for R2D3, offline data for QT-Opt
                                                (docs/demonstrations.md)
  drlmpi layout --algo A -n N [--ranks-per-host K]
                                                print the rank layout N ranks would get
  drlmpi config --algo A                        list the algorithm's config keys, defaults and meaning

User errors print one line on stderr (from rank 0) and exit 2 on every rank. Any other
exception on any rank prints `rank R (role) failed:` with its traceback and aborts the job.
Files are data: nothing a checkpoint, demonstrations file or run directory names is imported (algorithms come
from the registry; a checkpoint's `module:Env` id is imported only when --env names it again, or with --trust).
SIGTERM, SIGUSR1 or SIGINT make a training job checkpoint and exit with code 75 (resume it with
`--resume auto`; see drlmpi.signals).
"""

import argparse
import json
import resource
import sys

from drlmpi.errors import UserError

COMMANDS = ("train", "eval", "inspect", "report", "record", "layout", "config")
CHECKS_TIMEOUT = 3600.0  # seconds the other ranks wait for rank 0's checks (it verifies every part of the checkpoint
# it resumes, replay included, and validate may read large offline data: the same bound as the final checkpoint's)
REFUSE_TIMEOUT = 5.0  # seconds a rank refusing the job at start-up waits for the others to refuse it too
END_TIMEOUT = 3600.0  # seconds ranks wait at the end for the lead's final checkpoint (replay parts may be large)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="drlmpi", description="Distributed deep reinforcement learning on MPI.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    t = sub.add_parser("train", help="train an agent (the default command)")
    t.add_argument("--algo", required=True)
    t.add_argument("--env", required=True)
    t.add_argument("--config", help="TOML file of config keys")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    t.add_argument("--total-env-steps", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--run-dir")
    t.add_argument("--layout", help="role counts, e.g. learner=2,replay=4,ps=1")
    t.add_argument("--trust", action="store_true", help="let a resumed checkpoint's config name a module to import "
                   "(PBT's member)")
    t.add_argument("--resume", metavar="PATH|auto", help="continue from a checkpoint file or run directory; auto: "
                   "the newest checkpoint of --run-dir, or a fresh start if it has none")
    e = sub.add_parser("eval", help="greedy evaluation of a checkpoint or run directory")
    e.add_argument("path")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--seed", type=int, default=12345)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--env", help="the checkpoint's env, named again: lets a module:Env id be imported")
    e.add_argument("--trust", action="store_true", help="import the modules the checkpoint names (its algorithm, "
                   "a module:Env id): only for files you trust, as they run that code")
    e.add_argument("--video", metavar="DIR", help="each episode to DIR/episode-<k>.mp4 (needs the video extra)")
    i = sub.add_parser("inspect", help="what a checkpoint holds: algorithm, counters, layout, sizes, last metrics")
    i.add_argument("path")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    rp = sub.add_parser("report", help="figures and a summary of one or more runs, overlaid")
    rp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    rp.add_argument("--out", help="output directory (default: <first run dir>/report)")
    rp.add_argument("--seeds", action="store_true", help="one line per algorithm and env: the mean of its runs "
                    "(seeds), shaded from the lowest to the highest")
    rec = sub.add_parser("record", help="record demonstration episodes of a checkpoint or a function to HDF5")
    rec.add_argument("--env", required=True)
    src = rec.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="PATH", help="a checkpoint file or run directory: its greedy policy")
    src.add_argument("--policy", metavar="MODULE:FUNCTION", help="a function obs [E, ...] -> actions [E] (numpy)")
    rec.add_argument("--episodes", type=int, default=10)
    rec.add_argument("--out", required=True, metavar="FILE.h5")
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--epsilon", type=float, default=0.0,
                     help="probability of a uniformly random action instead of the policy's (a broader dataset)")
    rec.add_argument("--trust", action="store_true", help="import the algorithm module a --checkpoint names")
    lay = sub.add_parser("layout", help="print the rank layout for N ranks")
    lay.add_argument("--algo", required=True)
    lay.add_argument("-n", type=int, required=True)
    lay.add_argument("--layout", default="")
    lay.add_argument("--ranks-per-host", type=int, default=0, help="show the placement on hosts of K ranks each")
    c = sub.add_parser("config", help="list an algorithm's config keys")
    c.add_argument("--algo", required=True)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["train", *argv]
    return _parser().parse_args(argv)


def prepare_train(args):
    """Validate everything that can be checked before MPI work starts; returns (module, cfg, resumed state)."""
    from drlmpi import algos, config, lifecycle, rundir
    from drlmpi.envs import check_env_id

    module = algos.get(args.algo)
    flags = {"env": args.env, "seed": args.seed, "total_env_steps": args.total_env_steps, "run_dir": args.run_dir,
             "layout": args.layout}
    if args.run_dir:
        rundir.lock(args.run_dir)  # before reading its checkpoints: no other job writes there while this one runs
    resumed = lifecycle.resume_state(args.resume, args.run_dir) if args.resume else None
    if resumed is not None:
        flags["run_dir"] = args.run_dir or str(resumed.path.parent.parent)
        cfg = lifecycle.resumed_config(module, args.algo, resumed, args.config, args.set, args.trust, **flags)
    else:
        cfg = config.build(module.Config, args.config, args.set, **flags)
    check_env_id(cfg.env)
    if cfg.wandb:
        rundir.require_wandb(cfg.wandb)
    if hasattr(module, "validate"):  # what needs files, envs or networks: once, here, before any rank starts
        cfg = module.validate(cfg) or cfg
    if not cfg.run_dir:
        cfg.run_dir = rundir.default_run_dir(args.algo, cfg.env)
    rundir.lock(cfg.run_dir)
    return module, cfg, resumed


def agree(world, args) -> tuple[dict, object]:
    """Rank 0 checks everything it can before MPI work starts; every rank gets its outcome (JSON, control plane):
    {"kind": "ok", "algo", "config", "resume": path or ""}, {"kind": "finished", "message"} or a UserError raised
    on every rank. Returns (outcome, the resumed checkpoint.State rank 0 verified, or None)."""
    from drlmpi import config, runtime
    from drlmpi.comm.control import bcast_json

    outcome, resumed = None, None
    if world.rank == 0:
        try:
            module, cfg, resumed = prepare_train(args)
            if resumed is not None and resumed.env_steps >= cfg.total_env_steps:
                outcome = {"kind": "finished", "message": f"{resumed.path} has {resumed.env_steps} of total_env_steps "
                           f"{cfg.total_env_steps}: nothing to do (raise --total-env-steps to go on)"}
            else:
                outcome = {"kind": "ok", "algo": args.algo, "config": config.to_dict(cfg),
                           "resume": str(resumed.path) if resumed else ""}
        except UserError as e:
            outcome = {"kind": "error", "message": str(e)}
        except OSError as e:  # a file the user named (a directory, unreadable, ...): their error, in one line
            outcome = {"kind": "error", "message": f"{e.filename or ''}: {e.strerror or e}".lstrip(": ")}
        except BaseException as e:  # noqa: BLE001 - a bug: its traceback, and the job ends (never a hang)
            runtime.report_and_abort(e)
    try:
        outcome = bcast_json(world, outcome, what="rank 0's checks of the job", timeout=CHECKS_TIMEOUT)
    except BaseException as e:  # noqa: BLE001 - the time limit, or a second signal: the job ends
        runtime.report_and_abort(e)
    if outcome["kind"] == "error":
        raise UserError(outcome["message"])
    return outcome, resumed


def start_job(world, outcome: dict, resumed):
    """The algorithm, config, resumed state and runtime every rank agreed on; prints the job's first lines."""
    from drlmpi import algos, checkpoint, config, runtime

    algo = outcome["algo"]
    module = algos.get(algo)
    cfg = config.from_dict(module.Config, outcome["config"])
    if outcome["resume"] and resumed is None:  # (rank 0 loaded it and verified its parts)
        resumed = checkpoint.load(outcome["resume"], parts=False)
    spec = module.LAYOUT
    if cfg.layout and not getattr(module, "SPLITS_WORLD", False):  # (PBT lays out each member with it)
        spec = spec.with_overrides(runtime.parse_layout_arg(cfg.layout), algo)
    rt = runtime.start(spec, algo, cfg.seed, world, cfg.torch_threads)
    runtime.install_thread_hook()
    algos.check_roles(module, rt.layout, algo)  # the same layout on every rank: all refuse it together, one line
    if hasattr(module, "check_layout"):
        module.check_layout(rt.layout, cfg)
    if rt.rank == 0:
        print(f"drlmpi {algo} on {cfg.env}: {rt.size} rank(s), run dir {cfg.run_dir}", flush=True)
        if resumed is not None:
            print(f"resuming from {resumed.path} ({resumed.env_steps} env steps, "
                  f"{int(resumed.counters.get('updates', 0))} updates)", flush=True)
        if rt.size > 1 and not getattr(module, "SPLITS_WORLD", False):  # (PBT prints its members' layout)
            print(rt.layout.table(), flush=True)
    return module, cfg, resumed, rt


def train(args) -> int:
    """Every rank: agree on the job (rank 0 checks it), start the runtime, run this rank's role, meet at the end.
    Past the agreement, any exception on any rank ends the whole job (report_and_abort); a UserError at start-up
    is every rank's at once (the layout is the same everywhere) or ends the job too (refuse_together)."""
    from mpi4py import MPI

    from drlmpi import runtime

    world = MPI.COMM_WORLD
    outcome, resumed = agree(world, args)
    if outcome["kind"] == "finished":
        if world.rank == 0:
            print(f"drlmpi: {outcome['message']}", flush=True)
        return 0
    refusals = world.Dup()  # (its own messages: a refusing rank meets only the others that refuse)
    try:
        module, cfg, resumed, rt = start_job(world, outcome, resumed)
    except UserError as e:
        refuse_together(refusals, e)
    except BaseException as e:  # noqa: BLE001 - any failure ends the whole job
        runtime.report_and_abort(e)
    try:
        return run_job(module, cfg, resumed, rt)
    except BaseException as e:  # noqa: BLE001
        runtime.report_and_abort(e)


def refuse_together(comm, e: UserError) -> None:
    """Re-raise a start-up UserError once every rank has raised it (rank 0 prints it; all exit 2); a rank that
    refuses alone prints it with its rank and ends the job, exit 2 (never a hang)."""
    from mpi4py import MPI

    from drlmpi.runtime import barrier

    try:
        barrier(comm, REFUSE_TIMEOUT, what="every rank to refuse the job")
    except TimeoutError:
        sys.stderr.write(f"drlmpi: error: {e} (rank {comm.rank} only)\n")
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(2)
    raise e


def run_job(module, cfg, resumed, rt) -> int:
    """Run this rank's role; then every rank's memory and the lead's summary meet on rank 0; the exit code."""
    from drlmpi import algos, signals
    from drlmpi.comm.control import gather_json

    summary = algos.run(module, rt, cfg, resumed)
    if signals.stopping:
        signals.settle()  # before any rank can exit 75 and have the scheduler TERM the others
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
    # control plane, once: every rank's memory, and the lead's summary (the lead is not rank 0 where a ps comes first);
    # a long limit: the lead may still be writing the final checkpoint
    mem = gather_json(rt.world, [peak, *memory_parts(), summary], what="every rank's end (the lead writes the final "
                      "checkpoint first)", timeout=END_TIMEOUT)
    if rt.rank == 0:
        print_end(rt, mem, getattr(module, "SPLITS_WORLD", False))
    if signals.stopping:
        if rt.rank == 0:
            print(f"stopped by a signal with a complete checkpoint: exit {signals.REQUEUE_EXIT}; continue with "
                  f"--resume auto --run-dir {cfg.run_dir}", flush=True)
        return signals.REQUEUE_EXIT
    return 0


def print_end(rt, mem: list, splits: bool) -> None:
    """Rank 0: the lead's summary and every role's memory (mem: each rank's [peak, PSS, anon, file, shmem, summary])."""
    summary = next((m[-1] for m in mem if m[-1]), None)
    if summary:
        print(f"done: {summary['env_steps']} env steps, {summary['updates']} updates in {summary['seconds']:.1f} s; "
              f"recent return {summary['recent_return']:.1f}; checkpoint {summary['checkpoint']}", flush=True)
    if rt.size == 1:
        return
    by_role: dict[str, list] = {}
    for r, m in enumerate(mem):
        by_role.setdefault("rank" if splits else rt.layout.roles[r], []).append(m)
    print("peak memory per rank (MiB): " + ", ".join(
        f"{role} {max(m[0] for m in v):.0f}" + (
            f" (max of {len(v)}, mean {sum(m[0] for m in v) / len(v):.0f})" if len(v) > 1 else "")
        for role, v in by_role.items()), flush=True)
    print("memory at the end, mean per rank (MiB, proportional set size = private anon + share of files + share "
          "of shared memory): " + ", ".join(
              f"{role} {sum(m[1] for m in v) / len(v):.0f} = {sum(m[2] for m in v) / len(v):.0f} + "
              f"{sum(m[3] for m in v) / len(v):.0f} + {sum(m[4] for m in v) / len(v):.0f}"
              for role, v in by_role.items()) + f"; job total {sum(m[1] for m in mem):.0f}", flush=True)


def memory_parts() -> tuple[float, float, float, float]:
    """This process's (PSS, anon, file, shmem) in MiB from /proc/self/smaps_rollup (zeros where absent)."""
    parts = dict.fromkeys(("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem"), 0.0)
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in parts:
                    parts[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return tuple(parts.values())


def evaluate(args) -> int:
    from drlmpi.evaluate import evaluate as run_eval

    if args.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {args.episodes}")
    result = run_eval(args.path, args.episodes, args.seed, args.env, args.trust, args.video)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['algo']} on {result['env']} ({result['env_steps']} env steps): mean return "
              f"{result['mean_return']:.2f} +- {result['std_return']:.2f} over {result['episodes']} episodes")
        for v in result.get("videos", []):
            print(f"  {v['file']}: {v['frames']} frames, return {v['return']:g}")
    return 0


def inspect(args) -> int:
    import math

    from drlmpi import checkpoint

    st = checkpoint.load(args.path)  # verifies the main file and every part, or raises CheckpointError
    files = {"main": st.path.stat().st_size, **{n: st.part_path(n).stat().st_size for n in st.parts}}
    last = {k: float(v[-1]) for k, v in st.metrics.items() if len(v) and not math.isnan(float(v[-1]))}
    roles: dict[str, int] = {}
    for r in st.layout.get("roles", []):
        roles[r] = roles.get(r, 0) + 1
    info = {"path": str(st.path), "algo": st.algo, "env": st.env, "env_steps": st.env_steps,
            "updates": int(st.counters.get("updates", 0)), "wall_time": float(st.counters.get("wall_time", 0.0)),
            "complete": True, "id": st.id, "layout": roles, "hosts": len(set(st.layout.get("hosts", []))),
            "parameters": {n: int(sum(a.size for a in p.values())) for n, p in st.nets.items()},
            "optimizers": sorted(st.optim), "rng": len(st.rng), "parts": sorted(st.parts), "bytes": files,
            "total_env_steps": st.config.get("total_env_steps"), "last_metrics": last}
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['path']}: {st.algo} on {st.env}, complete (checksums verified)")
    print(f"  env steps {info['env_steps']:,} of {info['total_env_steps']:,}, updates {info['updates']:,}, "
          f"wall time {info['wall_time']:.1f} s, checkpoint id {st.id}")
    print("  layout: " + ", ".join(f"{n} {r}" for r, n in roles.items()) + f" on {info['hosts']} host(s); "
          f"RNG states of {info['rng']} rank(s)")
    print("  parameters: " + ", ".join(f"{n} {c:,}" for n, c in info["parameters"].items()) +
          f"; optimizers: {', '.join(info['optimizers']) or 'in the parts'}")
    print("  files: " + ", ".join(f"{n} {b / 2**20:.2f} MiB" for n, b in files.items()))
    if last:
        print("  last metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items()))
    return 0


def make_report(args) -> int:
    from drlmpi.report import report

    files = report(args.run_dirs, args.out or str(__import__("pathlib").Path(args.run_dirs[0]) / "report"),
                   seeds=args.seeds)
    print(f"wrote {len(files)} files to {files[-1].parent}: " + ", ".join(f.name for f in files))
    return 0


def record_demos(args) -> int:
    from drlmpi import config, demos
    from drlmpi.envs import check_env_id

    if args.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {args.episodes}")
    if not 0 <= args.epsilon <= 1:
        raise UserError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    check_env_id(args.env)
    if args.policy:
        fn, source = demos.import_policy(args.policy), f"policy {args.policy}"

        def make_policy(env):
            return fn
    else:
        from drlmpi.evaluate import policy_checkpoint

        ckpt, module = policy_checkpoint(args.checkpoint, args.trust)
        if ckpt.env != args.env:
            raise UserError(f"--checkpoint {ckpt.path} was trained on {ckpt.env}, not {args.env}")
        cfg, source = config.from_dict(module.Config, ckpt.config), f"checkpoint {ckpt.path}"

        def make_policy(env):
            return module.load_policy(cfg, ckpt.weights, env)
    if args.epsilon:
        source += f" with epsilon {args.epsilon:g}"
    d = demos.record(args.env, make_policy, args.episodes, args.seed, source, epsilon=args.epsilon)
    demos.save(args.out, d, source)
    print(f"wrote {args.out}: {d.episodes} episodes, {len(d.actions)} steps of {args.env} from {source}; "
          f"mean return {d.returns.mean():.2f} (min {d.returns.min():.2f}, max {d.returns.max():.2f})")
    return 0


def layout(args) -> int:
    from drlmpi import algos, config, runtime

    module = algos.get(args.algo)
    if getattr(module, "SPLITS_WORLD", False):
        print(f"{args.algo} splits the world into groups that each run a member algorithm's layout: see "
              f"`drlmpi layout --algo MEMBER -n N/P`")
        return 0
    spec = module.LAYOUT
    if args.layout:
        spec = spec.with_overrides(runtime.parse_layout_arg(args.layout), args.algo)
    if args.n < 1 or args.ranks_per_host < 0:
        raise UserError("-n must be >= 1 and --ranks-per-host >= 0")
    k = args.ranks_per_host or args.n
    hosts = tuple(f"host{r // k}" for r in range(args.n))
    cores = (runtime.context.usable_cores(),) * args.n
    lay = runtime.build_layout(args.n, spec, args.algo, hosts, cores)
    algos.check_roles(module, lay, args.algo)
    if hasattr(module, "check_layout"):  # (with the default config: what `train` refuses with no --set)
        module.check_layout(lay, config.build(module.Config))
    print(lay.table())
    return 0


def show_config(args) -> int:
    import dataclasses

    from drlmpi import algos, config

    cls = algos.get(args.algo).Config
    presets = {prefix: config.merged(cls, name) for prefix, name in config.PRESETS.items()}  # ALE/: {...}, ...
    presets.update({label: config.merged(cls, name) for label, name in config.BOX_ACTIONS.items()})
    for f in dataclasses.fields(cls):
        notes = [f"{prefix}: {p[f.name]!r}" for prefix, p in presets.items() if f.name in p]
        note = f" ({'; '.join(notes)})" if notes else ""
        note += " [structural: fixed on resume]" if f.metadata.get("structural") else ""
        print(f"{f.name:<22} {f.default!r:<16} {f.metadata.get('doc', '')}{note}")
    space = config.search_space(cls)
    if space:
        print("searchable by pbt (--set search=...): " + "; ".join(
            f"{n} ({', '.join(h.keys)}; {h.scale} {h.lo:g}..{h.hi:g})" for n, h in space.items()))
    return 0


def _is_rank0() -> bool:
    if "mpi4py.MPI" in sys.modules:
        return sys.modules["mpi4py.MPI"].COMM_WORLD.rank == 0
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse(argv)
        if args.command == "train":
            from drlmpi import signals

            signals.install()  # before MPI starts (agree imports mpi4py.MPI): a signal from the first instant on
        handler = {"train": train, "eval": evaluate, "inspect": inspect, "report": make_report, "record": record_demos,
                   "layout": layout, "config": show_config}[args.command]
        return handler(args)
    except UserError as e:
        if _is_rank0():
            print(f"drlmpi: error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
