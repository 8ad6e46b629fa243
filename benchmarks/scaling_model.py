"""A throughput model of drlmpi from the per-role costs benchmarks/scaling.py measures: frames/s and the bottleneck
of Ape-X, IMPALA, SEED RL and PPO (CartPole-v1, their defaults) at 16 to 1,024 ranks on nodes of 32 or 128 cores,
checked against every frames/s point the scaling CSV holds.

Inputs (rows of the CSV; each busy rank is assumed to have a core of the measured machine's speed to itself):
  a_X      one process's raw acting frames/s for algorithm X (`frames` rows: `limit` at 1 actor)
  r_X      an actor's frames/s in a job: Ape-X's `actor` row (benchmarks/apex.py); IMPALA's 1-actor job (so that
           point calibrates); SEED's from its round trip, below
  U_apex   Ape-X's learner updates/s in a job (`learner` row); it learns 1 / replay_ratio env steps an update
  U_X      IMPALA's and SEED's bare learner updates/s on a batch of f = 40 frames (`cost` rows)
  fwd(b)   the central server's forward on b observations: c0 + c1 b seconds, through b = 1 and 64
  I        a replay shard's storage inserts/s (`cost,apex-insert`: the storage alone, an upper bound)
  publish  the lead learner's weights publication: B bytes copied into its node's window (memcpy rows) and, across
           nodes, broadcast to each node's relay; once every publish_every updates
  T_ar     the allreduce of B bytes over k ranks on a node and n nodes: the two-rank GradAllreduce measured at B
           (interpolated between the measured sizes; it holds the once-a-call meeting at the Ibarrier), plus a tree
           level's latency (the wire alone, `mpi-blocking` at the smallest size) for each level past the first and a
           ring's extra bandwidth 2 (k - 1) / k - 1 times the two-rank slope; across nodes a_n log2(n) +
           2 (n - 1) / n b_n B with the network's latency and bandwidth (`--net-latency-us`, `--net-gbps`: a
           datasheet's, not measured here). Learners fill the first node first, as the layout places them.

The model of each algorithm (K actors; L learners, the default 1):
  Ape-X   min(K r, U_L / replay_ratio, S I): U_L = 1 / (1 / U_apex + T_ar(grad, L) + publish); the throttle counts
          an allreduced update once, so learners add samples to an update, not updates; S shards, one a node
  IMPALA  min(K r, L f U_L): U_L = 1 / (1 / U_impala + T_ar(grad, L) + publish)
  SEED    min(K E / (E / a + t_rt), L / (c1 + c0 / b + 1 / (f U_L))): t_rt, the round trip besides acting, from the
          1-actor job (E / F_1 - E / a); a server answers b = (K / L) E observations a batch at most
  PPO     P n E / (n E / a + t_learn + epochs minibatches T_ar(grad, P)): t_learn from the 1-rank job
          (n E / F_1 - n E / a); P workers, each with n_steps n of E envs a round
"Scaled": what keeps the learning side up with the actors at a size: the least number of IMPALA learners or SEED
servers whose term reaches the actors', and Ape-X's replay ratio that lets one learner keep up (arithmetic, not a
setting Ape-X learns with: samples per env step fall with it).

Output: <out>/model.csv and <out>/model.png, and on stdout the check (model against measurement) and the
prediction tables. Usage: python benchmarks/scaling_model.py [--csv docs/figures/scaling/2-cores/scaling.csv]
                          [--out docs/figures/scaling/model] [--net-latency-us 2] [--net-gbps 12.5]
"""

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ALGOS = ("apex", "impala", "seed", "ppo")
LEAST_RANKS = {"apex": 3, "impala": 2, "seed": 2, "ppo": 1}  # a learner (Ape-X: and a replay shard) and an actor
RANKS = (16, 64, 256, 1024)
NODE_CORES = (32, 128)


@dataclass
class Costs:
    """The measured per-role costs (seconds, frames/s, bytes) and the defaults' shapes the model needs."""

    raw: dict  # algo -> one process's raw acting frames/s
    job1: dict  # algo -> (ranks, frames/s) of its 1-actor job
    actor: dict  # apex, impala -> an actor's frames/s in a job
    u_apex: float  # Ape-X learner updates/s in a job
    u: dict  # impala/seed -> (bare updates/s, frames an update)
    insert: float  # a replay shard's storage inserts, rows (Ape-X: env steps)/s
    fwd: tuple[float, float]  # server forward: c0 s, c1 s an observation
    ar2: tuple[list, list]  # the two-rank GradAllreduce: bytes, seconds (ascending)
    level: float  # a tree level's latency on a node (the wire alone, smallest size), s
    copy: float  # memcpy s/byte (publishing weights into a node's window)
    net: tuple[float, float]  # across nodes: latency s, s/byte (assumed)
    cores: int  # the measured machine's cores
    cfg: dict  # algo -> the defaults the model reads (num_envs, n_steps, ...)
    grad: dict  # algo -> gradient bytes


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return [{**r, **{k: float(r[k]) for k in ("ranks", "actors", "value", "limit", "ratio")}}
                for r in csv.DictReader(f)]


def pick(rows: list[dict], **match) -> list[dict]:
    return sorted([r for r in rows if all(r[k] == v for k, v in match.items())], key=lambda r: r["actors"])


def defaults() -> tuple[dict, dict]:
    """Each algorithm's CartPole defaults the model reads, and its gradient's bytes (float32)."""
    from drlmpi import algos, config
    from drlmpi.envs import spaces

    cfg, grad = {}, {}
    obs_space, act_space = spaces("CartPole-v1")
    for algo in ALGOS:
        c = config.build(algos.get(algo).Config, env="CartPole-v1")
        cfg[algo] = {k: getattr(c, k) for k in ("num_envs", "n_steps", "epochs", "minibatches", "replay_ratio",
                                                 "publish_every") if hasattr(c, k)}
        net = algos.get(algo).build_net(c, obs_space, act_space)
        grad[algo] = 4 * sum(p.numel() for p in net.parameters())
    return cfg, grad


def read_costs(path: Path, net_latency_us: float, net_gbps: float) -> Costs:
    rows = read_rows(path)
    first = {a: pick(rows, part="frames", algo=a)[0] for a in ALGOS}
    fwd = [1 / r["value"] for r in pick(rows, part="cost", algo="seed-forward")]  # at 1 and 64 observations
    copy = pick(rows, part="memcpy")
    cfg, grad = defaults()
    return Costs(
        raw={a: r["limit"] / r["actors"] for a, r in first.items()},
        job1={a: (int(r["ranks"]), r["value"]) for a, r in first.items()},
        actor={"apex": pick(rows, part="actor", algo="apex")[0]["value"], "impala": first["impala"]["value"]},
        u_apex=pick(rows, part="learner", algo="apex")[0]["value"],
        u={a: (pick(rows, part="cost", algo=a)[0]["value"], pick(rows, part="cost", algo=a)[0]["actors"])
           for a in ("impala", "seed")},
        insert=pick(rows, part="cost", algo="apex-insert")[0]["value"],
        fwd=(fwd[0] - (fwd[1] - fwd[0]) / 63, (fwd[1] - fwd[0]) / 63),
        ar2=([4 * r["actors"] for r in pick(rows, part="allreduce", algo="mpi")],
             [r["value"] / 1e3 for r in pick(rows, part="allreduce", algo="mpi")]),
        level=pick(rows, part="mpi-blocking")[0]["value"] / 1e3,
        copy=(copy[-1]["value"] - copy[0]["value"]) / 1e3 / (4 * (copy[-1]["actors"] - copy[0]["actors"])),
        net=(net_latency_us * 1e-6, 1 / (net_gbps * 1e9)), cores=int(pick(rows, part="machine")[0]["value"]),
        cfg=cfg, grad=grad)


def two_ranks_s(c: Costs, nbytes: float) -> float:
    """The measured two-rank GradAllreduce at nbytes: interpolated, extrapolated along the last segment."""
    x, y = c.ar2
    if nbytes <= x[-1]:
        return float(np.interp(nbytes, x, y))
    return y[-1] + (nbytes - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2])


def allreduce_s(c: Costs, nbytes: float, k: int, nodes: int) -> float:
    """One allreduce of nbytes among k ranks a node on `nodes` nodes (hierarchical: on each node, then across)."""
    if k * nodes <= 1:
        return 0.0
    x, y = c.ar2
    slope = (y[-1] - y[-2]) / (x[-1] - x[-2])  # s a byte, two ranks
    t = 0.0
    if k > 1:
        t = two_ranks_s(c, nbytes) + c.level * (math.log2(k) - 1) + slope * nbytes * (2 * (k - 1) / k - 1)
    if nodes > 1:
        t += c.net[0] * math.log2(nodes) + 2 * (nodes - 1) / nodes * c.net[1] * nbytes
    return t


def spread(ranks: int, node_cores: int) -> tuple[int, int]:
    """(nodes, ranks a node) of `ranks` ranks filling nodes of node_cores cores in order."""
    nodes = max(1, math.ceil(ranks / node_cores))
    return nodes, math.ceil(ranks / nodes)


def publish_s(c: Costs, algo: str, nodes: int) -> float:
    """A weights publication's share of an update: a copy into the node's window and, across nodes, a broadcast
    to each node's relay; once every publish_every updates (SEED RL publishes nothing: its learner serves)."""
    if "publish_every" not in c.cfg[algo]:
        return 0.0
    nbytes = c.grad[algo]
    t = c.copy * nbytes
    if nodes > 1:
        t += c.net[0] * math.log2(nodes) + c.net[1] * nbytes
    return t / c.cfg[algo].get("publish_every", 1)


def updates_per_s(c: Costs, algo: str, learners: int, node_cores: int, nodes: int) -> float:
    """The learners' (allreduced) updates/s: an update's cost, the allreduce between them (they fill the first
    node first), the publication to `nodes` nodes."""
    per_update = 1 / c.u_apex if algo == "apex" else 1 / c.u[algo][0]
    lnodes, k = spread(learners, node_cores)
    return 1 / (per_update + allreduce_s(c, c.grad[algo], k, lnodes) + publish_s(c, algo, nodes))


def predict(c: Costs, algo: str, ranks: int, node_cores: int, learners: int = 1) -> tuple[float, str]:
    """(frames/s, the binding stage) of `algo` on `ranks` ranks filling nodes of `node_cores` cores."""
    nodes, k = spread(ranks, node_cores)
    if algo == "ppo":
        fps, parts = ppo_fps(c, k, nodes)
        return fps, max(parts, key=parts.get)
    actors = ranks - learners - (nodes if algo == "apex" else 0)  # Ape-X: a replay shard on each node
    ups = updates_per_s(c, algo, learners, node_cores, nodes)
    if algo == "apex":
        terms = {"actors": actors * c.actor["apex"], "learner": ups / c.cfg["apex"]["replay_ratio"],
                 "replay": nodes * c.insert}
    elif algo == "impala":
        terms = {"actors": actors * c.actor["impala"], "learner": learners * c.u["impala"][1] * ups}
    else:
        e = c.cfg["seed"]["num_envs"]
        t_rt = e / c.job1["seed"][1] - e / c.raw["seed"]
        batch = max(1.0, actors / learners) * e
        terms = {"actors": actors * e / (e / c.raw["seed"] + t_rt),
                 "server": learners / (c.fwd[1] + c.fwd[0] / batch + 1 / (c.u["seed"][1] * ups))}
    name = min(terms, key=terms.get)
    return terms[name], name


def ppo_fps(c: Costs, k: int, nodes: int) -> tuple[float, dict]:
    """PPO's frames/s on k workers a node on `nodes` nodes, and a round's seconds by part."""
    d = c.cfg["ppo"]
    frames = d["n_steps"] * d["num_envs"]
    parts = {"acting": frames / c.raw["ppo"], "learning": frames / c.job1["ppo"][1] - frames / c.raw["ppo"],
             "allreduce": d["epochs"] * d["minibatches"] * allreduce_s(c, c.grad["ppo"], k, nodes)}
    return k * nodes * frames / sum(parts.values()), parts


def scaled(c: Costs, algo: str, ranks: int, node_cores: int) -> tuple[str, float]:
    """What keeps the learning side up with the actors at this size, and the frames/s then (see the docstring)."""
    if algo == "ppo":
        return "-", predict(c, algo, ranks, node_cores)[0]
    if algo == "apex":
        nodes, _ = spread(ranks, node_cores)
        fps = min((ranks - 1 - nodes) * c.actor["apex"], nodes * c.insert)
        return f"replay_ratio {updates_per_s(c, 'apex', 1, node_cores, nodes) / fps:.2g}", fps
    best = (0.0, 1)
    for learners in range(1, ranks - 1):
        fps, bound = predict(c, algo, ranks, node_cores, learners)
        if bound == "actors":
            return f"{learners} {'servers' if algo == 'seed' else 'learners'}", fps
        best = max(best, (fps, learners))
    return f"{best[1]} {'servers' if algo == 'seed' else 'learners'} (the best)", best[0]


def check(c: Costs, rows: list[dict]) -> list[dict]:
    """Every measured frames/s point against the model on the measured machine: one node (Ape-X's 3 ranks on 2
    cores: its replay shard waits most of the time)."""
    out = []
    for r in pick(rows, part="frames"):
        fps, term = predict(c, r["algo"], int(r["ranks"]), max(c.cores, int(r["ranks"])))
        calibrates = r["algo"] in ("impala", "seed", "ppo") and (int(r["ranks"]), r["value"]) == c.job1[r["algo"]]
        out.append({"algo": r["algo"], "ranks": int(r["ranks"]), "measured": r["value"], "model": fps,
                    "error": fps / r["value"] - 1, "bound": term, "calibrates": calibrates})
    return out


def figure(c: Costs, checks: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    nc = NODE_CORES[0]
    for i, algo in enumerate(ALGOS):
        ranks = [r for r in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256, 512, 1024) if r >= LEAST_RANKS[algo]]
        ax.plot(ranks, [predict(c, algo, r, nc)[0] for r in ranks], "-", color=f"C{i}", label=f"{algo} model, defaults")
        if algo != "ppo":
            ax.plot(ranks, [scaled(c, algo, r, nc)[1] for r in ranks], ":", color=f"C{i}",
                    label=f"{algo} model, learning scaled")
        m = [x for x in checks if x["algo"] == algo]
        ax.plot([x["ranks"] for x in m], [x["measured"] for x in m], "o", color=f"C{i}", ms=7,
                label=f"{algo} measured ({c.cores} cores)")
        ax.plot([x["ranks"] for x in m], [x["model"] for x in m], "x", color="k", ms=6)
    ax.set(xscale="log", yscale="log", xlabel=f"ranks ({nc}-core nodes)", ylabel="env frames/s (CartPole-v1)",
           title="drlmpi throughput model (lines) and measurements (o; x: model there)")
    ax.legend(fontsize=6.5, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default=str(HERE.parent / "docs" / "figures" / "scaling" / "2-cores" / "scaling.csv"))
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "figures" / "scaling" / "model"))
    ap.add_argument("--net-latency-us", type=float, default=2.0, help="an inter-node message's latency (assumed)")
    ap.add_argument("--net-gbps", type=float, default=12.5, help="a node's network GB/s (assumed: 100 Gb/s)")
    a = ap.parse_args()
    c = read_costs(Path(a.csv), a.net_latency_us, a.net_gbps)
    checks = check(c, read_rows(Path(a.csv)))
    print(f"costs: raw acting {', '.join(f'{k} {v:,.0f}' for k, v in c.raw.items())} frames/s a process; Ape-X "
          f"learner {c.u_apex:.0f} updates/s; two-rank allreduce {c.ar2[1][0] * 1e6:.0f} us at {c.ar2[0][0]:,.0f} B, "
          f"a tree level {c.level * 1e6:.1f} us; server forward {c.fwd[0] * 1e6:.1f} us + {c.fwd[1] * 1e6:.2f} us "
          f"an observation")
    print("\n| algo | ranks | measured frames/s | model | error | bound by |\n|---|---|---|---|---|---|")
    for x in checks:
        note = " (calibrates)" if x["calibrates"] else ""
        print(f"| {x['algo']} | {x['ranks']} | {x['measured']:,.0f} | {x['model']:,.0f} | {x['error']:+.0%}{note} "
              f"| {x['bound']} |")
    table = []
    for algo in ALGOS:
        for nc in NODE_CORES:
            for r in RANKS:
                fps, bound = predict(c, algo, r, nc)
                how, fps_scaled = scaled(c, algo, r, nc)
                table.append({"algo": algo, "node_cores": nc, "ranks": r, "model": fps, "bound": bound,
                              "scaled_by": how, "scaled": fps_scaled})
    print("\n| algo | node cores | " + " | ".join(f"{r} ranks" for r in RANKS) + " |\n|---|---|" + "---|" * len(RANKS))
    for algo in ALGOS:
        for nc in NODE_CORES:
            pts = [t for t in table if t["algo"] == algo and t["node_cores"] == nc]
            print(f"| {algo} | {nc} | " + " | ".join(f"{t['model']:,.0f} ({t['bound']})" + (
                "" if algo == "ppo" else f"; {t['scaled']:,.0f} with {t['scaled_by']}") for t in pts) + " |")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "model.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(table[0]))
        w.writeheader()
        w.writerows({**t, "model": f"{t['model']:.4g}", "scaled": f"{t['scaled']:.4g}"} for t in table)
    figure(c, checks, out / "model.png")
    print(f"\n{out / 'model.csv'} and model.png written")


if __name__ == "__main__":
    main()
