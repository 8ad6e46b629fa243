"""A throughput model of drlmpi from the per-role costs benchmarks/scaling.py measures: frames/s and the bottleneck
of Ape-X, IMPALA, SEED RL and PPO (CartPole-v1, their defaults' layout) at 16 to 1,024 ranks on nodes of 32 or 128
cores, checked against every frames/s point the scaling CSV holds.

Inputs (one row each in the CSV; a rank is assumed to have a core of the measured machine's speed to itself):
  a_X      one process's raw acting frames/s for algorithm X (`frames` rows, `limit` at 1 actor)
  eta_X    the actor's share of raw acting left in a job (Ape-X: its `actor` row; IMPALA: the 1-actor job against
           raw acting; SEED: its 1-actor job calibrates the round trip instead, below)
  U_apex   Ape-X's learner updates/s in a job (`learner` row); it learns 1 / replay_ratio frames an update
  U_X      IMPALA's and SEED's bare learner updates/s on a batch of f_X frames (`cost` rows)
  fwd(b)   the central server's forward on b observations: c0 + c1 b seconds, fitted from b = 1 and 64
  publish  the lead learner's weights publication: B bytes copied into the node's window (memcpy's GB/s, fitted from
           the `memcpy` rows) and, across nodes, broadcast to each node's relay, once every publish_every updates
  T_ar     allreduce of B bytes over P ranks on n nodes: a_i log2(P/n) + 2 b_i B on a node (a_i, b_i fitted from the
           two-rank MPI rows) plus a_n log2(n) + 2 b_n B across nodes (a_n, b_n: `--net-latency-us`, `--net-gbps`,
           a network's datasheet, not measured here)

The model of each algorithm (K actors; L learners, the default 1; R = K + fixed ranks):
  Ape-X   min(K a eta, U_L / replay_ratio, S I),  U_L = 1 / (1 / U_apex + T_ar(grad, L) + publish): the
          throttle counts an allreduced update once, so learners add samples an update, not updates; S shards (one
          a node) of I inserts/s (`cost` row: the storage alone, an upper bound)
  IMPALA  min(K a eta, L f U_L),               U_L = 1 / (1 / U_impala + T_ar(grad, L) + publish)
  SEED    min(K E / (E / a + t_rt), C),  C = 1 / (c1 + 1 / (f U_seed)) frames/s for the server (one batched
          forward of every waiting request, and the learning); t_rt, the round trip besides acting, from the
          1-actor job: E / F_1 - E / a
  PPO     P n E / (n E / a + t_learn + epochs minibatches T_ar(grad, P)),  t_learn from the 1-rank job:
          n E / F_1 - n E / a  (P = R workers, each with n_steps n of E envs a round)
On the measured machine, busy ranks (all but Ape-X's replay shards, which wait most of the time) beyond its cores
share them: each term is scaled by min(1, cores / busy ranks). "learners
to keep up" is the least L whose learner term reaches the actors' (with the allreduce between them).

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
FIXED = {"apex": 1, "impala": 1, "seed": 1, "ppo": 0}  # learner ranks (Ape-X's replay shards: one a node, below)
RANKS = (16, 64, 256, 1024)
NODE_CORES = (32, 128)


@dataclass
class Costs:
    """The measured per-role costs (seconds, frames/s, bytes) and the defaults' shapes the model needs."""

    raw: dict  # algo -> one process's raw acting frames/s
    eta: dict  # algo -> actor's share of raw acting in a job
    job1: dict  # algo -> (ranks, frames/s) of its 1-actor job
    u_apex: float  # Ape-X learner updates/s in a job
    u: dict  # impala/seed -> (bare updates/s, frames an update)
    insert: float  # a replay shard's storage inserts, rows (Ape-X: env steps)/s
    fwd: tuple[float, float]  # server forward: c0, c1 seconds (+ per observation)
    ar: tuple[float, float]  # allreduce on a node: alpha s, beta s/byte
    copy: float  # memcpy s/byte (publishing weights into a node's window)
    net: tuple[float, float]  # across nodes: alpha s, beta s/byte (assumed)
    cores: int  # the measured machine's cores
    cfg: dict  # algo -> the defaults the model reads (num_envs, n_steps, ...)
    grad: dict  # algo -> gradient bytes


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return [{**r, **{k: float(r[k]) for k in ("ranks", "actors", "value", "limit", "ratio")}}
                for r in csv.DictReader(f)]


def pick(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def defaults() -> tuple[dict, dict]:
    """Each algorithm's CartPole defaults the model reads, and its gradient's bytes (float32)."""
    from drlmpi import algos, config
    from drlmpi.envs import make_vec

    cfg, grad = {}, {}
    env = make_vec("CartPole-v1", 1, seed=0)
    for algo in ALGOS:
        c = config.build(algos.get(algo).Config, env="CartPole-v1")
        cfg[algo] = {k: getattr(c, k) for k in ("num_envs", "n_steps", "epochs", "minibatches", "replay_ratio",
                                                 "publish_every") if hasattr(c, k)}
        net = algos.get(algo).build_net(c, env.observation_space, env.action_space)
        grad[algo] = 4 * sum(p.numel() for p in net.parameters())
    return cfg, grad


def fit_line(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x, both >= 0."""
    b, a = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return max(float(a), 0.0), max(float(b), 0.0)


def read_costs(path: Path, net_latency_us: float, net_gbps: float) -> Costs:
    rows = read_rows(path)
    raw, eta, job1 = {}, {}, {}
    for algo in ALGOS:
        r = min(pick(rows, part="frames", algo=algo), key=lambda r: r["actors"])
        raw[algo], eta[algo], job1[algo] = r["limit"] / r["actors"], r["ratio"], (int(r["ranks"]), r["value"])
    eta["apex"] = pick(rows, part="actor", algo="apex")[0]["ratio"]
    fwd = sorted(pick(rows, part="cost", algo="seed-forward"), key=lambda r: r["actors"])
    ar = pick(rows, part="allreduce", algo="mpi")
    cfg, grad = defaults()
    return Costs(raw, eta, job1, pick(rows, part="learner", algo="apex")[0]["value"],
                 {a: (pick(rows, part="cost", algo=a)[0]["value"], pick(rows, part="cost", algo=a)[0]["actors"])
                  for a in ("impala", "seed")}, pick(rows, part="cost", algo="apex-insert")[0]["value"],
                 fit_line([r["actors"] for r in fwd], [1 / r["value"] for r in fwd]),
                 fit_line([4 * r["actors"] for r in ar], [r["value"] / 1e3 for r in ar]),
                 fit_line([4 * r["actors"] for r in pick(rows, part="memcpy")],
                          [r["value"] / 1e3 for r in pick(rows, part="memcpy")])[1],
                 (net_latency_us * 1e-6, 1 / (net_gbps * 1e9)), int(pick(rows, part="machine")[0]["value"]), cfg, grad)


def allreduce_s(c: Costs, nbytes: float, p: int, nodes: int) -> float:
    """One allreduce of nbytes over p ranks on `nodes` nodes (hierarchical: on each node, then across)."""
    if p <= 1:
        return 0.0
    per_node = max(1, p // nodes)
    t = c.ar[0] * math.log2(per_node) + 2 * c.ar[1] * nbytes if per_node > 1 else 0.0
    if nodes > 1:
        t += c.net[0] * math.log2(nodes) + 2 * c.net[1] * nbytes
    return t


def publish_s(c: Costs, algo: str, nodes: int) -> float:
    """A weights publication (every publish_every updates): a copy into the node's window and, across nodes, a
    broadcast to each node's relay."""
    nbytes = c.grad[algo]
    t = c.copy * nbytes
    if nodes > 1:
        t += c.net[0] * math.log2(nodes) + c.net[1] * nbytes
    return t / c.cfg[algo].get("publish_every", 1)


def updates_per_s(c: Costs, algo: str, learners: int, nodes: int) -> float:
    """The learners' (allreduced) updates/s: one update's cost, the allreduce between them, the publication."""
    per_update = 1 / c.u_apex if algo == "apex" else 1 / c.u[algo][0]
    return 1 / (per_update + allreduce_s(c, c.grad[algo], learners, min(nodes, learners)) + publish_s(c, algo, nodes))


def learners_term(c: Costs, algo: str, learners: int, nodes: int) -> float:
    """Frames/s the learners take. Ape-X's throttle counts an allreduced update once, so its learners take
    1 / replay_ratio frames an update however many they are; IMPALA's take each learner's batch."""
    if algo == "apex":
        return updates_per_s(c, algo, learners, nodes) / c.cfg["apex"]["replay_ratio"]
    return learners * c.u[algo][1] * updates_per_s(c, algo, learners, nodes)


def seed_server(c: Costs, learners: int, nodes: int) -> float:
    """Frames/s `learners` SEED servers serve and learn from: a batched forward and the learning (with the
    allreduce between them), per frame."""
    per_frame_learning = 1 / (updates_per_s(c, "seed", learners, nodes) * c.u["seed"][1])
    return learners / (c.fwd[1] + per_frame_learning)


def predict(c: Costs, algo: str, ranks: int, node_cores: int, learners: int = 1, nodes: int = 0
            ) -> tuple[float, str]:
    """(frames/s, the binding term) of `algo` on `ranks` ranks on nodes of `node_cores` cores (as many nodes as
    the ranks fill, or `nodes`)."""
    nodes = nodes or max(1, math.ceil(ranks / node_cores))
    busy = ranks - (nodes if algo == "apex" else 0)  # (a replay shard waits most of the time)
    share = min(1.0, nodes * node_cores / busy)
    if algo == "ppo":
        fps, parts = ppo_fps(c, ranks, nodes)
        return fps * share, max(parts, key=parts.get)
    fixed = learners + (nodes if algo == "apex" else 0)  # Ape-X: a replay shard on each node
    k = ranks - fixed
    if algo == "seed":
        e = c.cfg["seed"]["num_envs"]
        t_rt = e / c.job1["seed"][1] - e / c.raw["seed"]
        terms = {"actors": k * e / (e / c.raw["seed"] + t_rt), "server": seed_server(c, learners, nodes)}
    else:
        terms = {"actors": k * c.raw[algo] * c.eta[algo], "learner": learners_term(c, algo, learners, nodes)}
        if algo == "apex":
            terms["replay"] = nodes * c.insert
    name = min(terms, key=terms.get)
    return terms[name] * share, name


def ppo_fps(c: Costs, p: int, nodes: int) -> tuple[float, dict]:
    """PPO's frames/s on p workers, and a round's seconds by part (acting, learning, allreduce)."""
    d = c.cfg["ppo"]
    frames = d["n_steps"] * d["num_envs"]
    parts = {"acting": frames / c.raw["ppo"], "learning": frames / c.job1["ppo"][1] - frames / c.raw["ppo"],
             "allreduce": d["epochs"] * d["minibatches"] * allreduce_s(c, c.grad["ppo"], p, nodes)}
    return p * frames / sum(parts.values()), parts


def keep_up(c: Costs, algo: str, ranks: int, node_cores: int) -> str:
    """What keeps the learning side up with the actors at this size: IMPALA's learners and SEED's servers (the
    least number whose term reaches the actors'), Ape-X's replay ratio (one learner); '-' for PPO."""
    if algo == "ppo":
        return "-"
    if algo == "apex":
        nodes = max(1, math.ceil(ranks / node_cores))
        supply = (ranks - 1 - nodes) * c.raw["apex"] * c.eta["apex"]
        return f"replay_ratio {updates_per_s(c, 'apex', 1, nodes) / supply:.2g}"
    for learners in range(1, ranks // 2):
        if predict(c, algo, ranks, node_cores, learners)[1] == "actors":
            return f"{learners} {'servers' if algo == 'seed' else 'learners'}"
    return f"> {ranks // 2}"


def scaled(c: Costs, algo: str, ranks: int, node_cores: int) -> float:
    """Frames/s with the learning side scaled to the actors: the best number of IMPALA learners or SEED servers;
    Ape-X with the replay ratio that keeps its learner up (the actors' term); PPO as it is."""
    if algo == "apex":
        nodes = max(1, math.ceil(ranks / node_cores))
        return min((ranks - 1 - nodes) * c.raw["apex"] * c.eta["apex"], nodes * c.insert)
    if algo == "ppo":
        return predict(c, algo, ranks, node_cores)[0]
    return max(predict(c, algo, ranks, node_cores, learners)[0] for learners in range(1, ranks // 2 + 1))


def check(c: Costs, rows: list[dict]) -> list[dict]:
    """Every measured frames/s point against the model on the measured machine."""
    out = []
    for r in pick(rows, part="frames"):
        fps, term = predict(c, r["algo"], int(r["ranks"]), c.cores, nodes=1)
        out.append({"algo": r["algo"], "ranks": int(r["ranks"]), "measured": r["value"], "model": fps,
                    "error": fps / r["value"] - 1, "bound": term,
                    "calibrates": (int(r["ranks"]), r["value"]) == c.job1[r["algo"]] and r["algo"] != "apex"})
    return out


def figure(c: Costs, checks: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    nc = NODE_CORES[0]
    for i, algo in enumerate(ALGOS):
        least = FIXED[algo] + 1 + (algo == "apex")  # (Ape-X: a replay shard too)
        ranks = [r for r in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256, 512, 1024) if r >= least]
        ax.plot(ranks, [predict(c, algo, r, nc)[0] for r in ranks], "-", color=f"C{i}", label=f"{algo} model, defaults")
        if algo != "ppo":
            ax.plot(ranks, [scaled(c, algo, r, nc) for r in ranks], ":", color=f"C{i}",
                    label=f"{algo} model, learning scaled")
        m = [x for x in checks if x["algo"] == algo]
        ax.plot([x["ranks"] for x in m], [x["measured"] for x in m], "o", color=f"C{i}", ms=7,
                label=f"{algo} measured ({c.cores} cores)")
        ax.plot([x["ranks"] for x in m], [x["model"] for x in m], "x", color="k", ms=6)
    ax.set(xscale="log", yscale="log", xlabel=f"ranks ({NODE_CORES[0]}-core nodes)",
           ylabel="env frames/s (CartPole-v1)",
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
          f"learner {c.u_apex:.0f} updates/s; allreduce on a node {c.ar[0] * 1e6:.1f} us + {1 / c.ar[1] / 1e9:.2f} "
          f"GB/s; server forward {c.fwd[0] * 1e6:.1f} us + {c.fwd[1] * 1e6:.2f} us an observation")
    print("\n| algo | ranks | measured frames/s | model | error | bound by |\n|---|---|---|---|---|---|")
    for x in checks:
        note = " (calibrates)" if x["calibrates"] else ""
        print(f"| {x['algo']} | {x['ranks']} | {x['measured']:,.0f} | {x['model']:,.0f} | {x['error']:+.0%}{note} "
              f"| {x['bound']} |")
    table = [{"algo": algo, "node_cores": nc, "ranks": r, "model": predict(c, algo, r, nc)[0],
              "bound": predict(c, algo, r, nc)[1], "keep_up": keep_up(c, algo, r, nc), "scaled": scaled(c, algo, r, nc)}
             for algo in ALGOS for nc in NODE_CORES for r in RANKS]
    print("\n| algo | node cores | " + " | ".join(f"{r} ranks" for r in RANKS) + " |\n|---|---|" + "---|" * len(RANKS))
    for algo in ALGOS:
        for nc in NODE_CORES:
            pts = [t for t in table if t["algo"] == algo and t["node_cores"] == nc]
            print(f"| {algo} | {nc} | " + " | ".join(f"{t['model']:,.0f} ({t['bound']})" + (
                "" if algo == "ppo" else f"; {t['scaled']:,.0f} with {t['keep_up']}") for t in pts) + " |")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "model.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["algo", "node_cores", "ranks", "model", "bound", "keep_up", "scaled"])
        w.writeheader()
        w.writerows({**t, "model": f"{t['model']:.4g}", "scaled": f"{t['scaled']:.4g}"} for t in table)
    figure(c, checks, out / "model.png")
    print(f"\n{out / 'model.csv'} and model.png written")


if __name__ == "__main__":
    main()
