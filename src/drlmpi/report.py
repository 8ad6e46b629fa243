"""`drlmpi report RUN_DIR [RUN_DIR ...] [--out DIR]`: PNG figures and a summary.md from runs' metrics.csv.

One figure per metric, every run overlaid in it (a seed sweep or a comparison of algorithms):

  return_vs_steps.png   recent return (mean of the last 100 episodes) against env frames, and the greedy
                        evaluations during training (eval_return, dotted with dots) at their weights' frames
  return_vs_time.png    the same against wall time (an evaluation at the time it finished)
  frames_per_s.png      frames/s of the job, and per actor (mean over actors, band from slowest to fastest)
  updates_per_s.png     learner updates/s
  policy_lag.png        learner updates between the weights an actor acted with and the learner's
  replay_fill.png       replay size / capacity
  loss.png              the learner's loss

With --seeds, the runs of one algorithm on one env (its seeds) are one line: their mean on a common x grid,
shaded from the lowest to the highest (runs from other tools in the same format, e.g. benchmarks/minatar_curves.py's
peers, group by their config.json's algo and env too).

A figure is left out when no run has its metric (DQN has no actors: no policy lag). Matplotlib's Agg
backend draws them: no display needed.

A population's run dir (PBT: population.csv) stands for its members' run dirs in those figures, and adds

  population[_<run>].png   each member's score at every ready point (x: exploits), against env steps
  hparams[_<run>].png      each searched hyperparameter of each member against env steps
"""

import csv
import json
import math
import re
from pathlib import Path

import numpy as np

from drlmpi.errors import UserError

FIGURES = [  # file, title, y column(s), x column, y label
    ("return_vs_steps", "Return against env frames", "recent_return", "env_frames", "recent return"),
    ("return_vs_time", "Return against wall time", "recent_return", "time", "recent return"),
    ("frames_per_s", "Frames per second", "frames_per_s", "time", "frames/s (job; dashed: per actor)"),
    ("updates_per_s", "Learner updates per second", "updates_per_s", "time", "updates/s"),
    ("policy_lag", "Policy lag", "policy_lag", "time", "learner updates behind"),
    ("replay_fill", "Replay fill", "replay_fill", "env_frames", "size / capacity"),
    ("loss", "Learner loss", "loss", "env_frames", "loss"),
]
X_LABEL = {"env_frames": "env frames", "time": "wall time (s)"}


def read_run(run_dir: str) -> dict:
    """A run's config and metrics columns (float arrays); raises UserError naming what is wrong."""
    d = Path(run_dir)
    path = d / "metrics.csv"
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise UserError(f"{run_dir}: not a run directory (no metrics.csv)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: unreadable ({e})") from None
    if not rows:
        raise UserError(f"{path}: no metric rows yet")
    try:
        cols = {k: np.array([float(r[k]) if r.get(k) not in (None, "") else np.nan for r in rows])
                for k in rows[0] if k}
    except (ValueError, TypeError) as e:
        raise UserError(f"{path}: not a drlmpi metrics file ({e})") from None
    if not {"time", "env_frames", "recent_return"} <= set(cols):
        raise UserError(f"{path}: not a drlmpi metrics file (columns {', '.join(list(cols)[:5])}, ...)")
    try:
        config = json.loads((d / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    return {"dir": d, "name": d.name, "config": config if isinstance(config, dict) else {}, "cols": cols}


def report(run_dirs: list[str], out: str, seeds: bool = False) -> list[Path]:
    """Write the figures and summary.md into `out`; returns the files written. seeds: one shaded line per algorithm
    and env."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    populations = [Path(d) for d in run_dirs if (Path(d) / "population.csv").exists()]
    runs = []
    for d in run_dirs:
        if Path(d) not in populations:
            runs.append(read_run(d))
            continue
        found = [(int(m[1]), f) for f in Path(d).glob("member-*/metrics.csv")
                 if (m := re.fullmatch(r"member-(\d+)", f.parent.name))]  # (other names are not members)
        for _, member in sorted(found):
            runs.append(read_run(str(member.parent)))  # a population stands for its members
            runs[-1]["name"] = f"{Path(d).name}/{member.parent.name}"
    names = [r["name"] for r in runs]
    if len(set(names)) < len(names):  # same leaf names: qualify with the parent
        for r in runs:
            r["name"] = f"{r['dir'].parent.name}/{r['dir'].name}"
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    draw = shaded if seeds else figure
    written = [path for spec in FIGURES if (path := draw(plt, runs, out_dir, *spec)) is not None]
    for d in populations:
        written += population_figures(d, out_dir, f"_{d.name}" if len(populations) > 1 else "", plt)
    summary = out_dir / "summary.md"
    summary.write_text(summary_md(runs, written))
    return [*written, summary]


def figure(plt, runs: list[dict], out_dir: Path, file: str, title: str, y: str, x: str, ylabel: str) -> Path | None:
    """One of FIGURES with every run that has its metric, or None if none has."""
    have = [r for r in runs if y in r["cols"] and np.isfinite(r["cols"][y]).any()]
    if not have:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, r in enumerate(have):
        c, color = r["cols"], f"C{i % 10}"
        ok = np.isfinite(c[y])
        ax.plot(c[x][ok], c[y][ok], color=color, label=r["name"], marker="." if ok.sum() < 30 else None)
        if y == "recent_return" and "eval_return" in c:
            ex, ey = greedy_points(c, x)
            ax.plot(ex, ey, color=color, linestyle=":", marker="o", markersize=3, label=f"{r['name']} (greedy)")
        if file == "frames_per_s" and "actor_fps_mean" in c:
            ax.plot(c[x], c["actor_fps_mean"], color=color, linestyle="--", linewidth=1)
            if "actor_fps_min" in c and "actor_fps_max" in c:
                ax.fill_between(c[x], c["actor_fps_min"], c["actor_fps_max"], color=color, alpha=0.15)
    return save(plt, fig, ax, out_dir, file, title, x, ylabel)


def save(plt, fig, ax, out_dir: Path, file: str, title: str, x: str, ylabel: str) -> Path:
    ax.set(title=title, xlabel=X_LABEL[x], ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / f"{file}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def population_figures(d: Path, out_dir: Path, suffix: str, plt) -> list[Path]:
    """A PBT run's scores and hyperparameters per member against env steps, exploits marked."""
    try:
        with open(d / "population.csv", newline="") as f:
            rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    except (OSError, ValueError, TypeError, csv.Error) as e:
        raise UserError(f"{d / 'population.csv'}: unreadable ({e})") from None
    if not rows:
        return []
    if not {"member", "env_steps", "score"} <= set(rows[0]):
        raise UserError(f"{d / 'population.csv'}: not a drlmpi population file (columns {', '.join(rows[0])})")
    hps = [k for k in rows[0] if k.startswith("hp_")]
    members = sorted({int(r["member"]) for r in rows})
    written = []
    for file, keys in ((f"population{suffix}", ["score"]), (f"hparams{suffix}", hps)):
        if not keys:
            continue
        fig, axes = plt.subplots(len(keys), 1, figsize=(7, 3.2 * len(keys)), squeeze=False)
        for ax, key in zip(axes[:, 0], keys):
            for m in members:
                mine = [r for r in rows if int(r["member"]) == m]
                x, y = [r["env_steps"] for r in mine], [r[key] for r in mine]
                ax.plot(x, y, color=f"C{m % 10}", marker=".", label=f"member {m}")
                ex = [(r["env_steps"], r[key]) for r in mine if r["parent"] >= 0]
                if ex:
                    ax.scatter(*zip(*ex), color=f"C{m % 10}", marker="x", s=40)
            vals = [r[key] for r in rows if np.isfinite(r[key])]
            if key != "score" and vals and min(vals) > 0 and max(vals) / min(vals) > 20:
                ax.set_yscale("log")
            ax.set(xlabel="member env steps", ylabel=key.removeprefix("hp_"))
            ax.grid(alpha=0.3)
        axes[0, 0].set_title(f"{d.name}: " + ("score at each ready point (x: after an exploit)" if keys == ["score"]
                                              else "hyperparameters (x: after an exploit)"))
        axes[0, 0].legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{file}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def shaded(plt, runs: list[dict], out_dir: Path, file: str, title: str, y: str, x: str, ylabel: str
           ) -> Path | None:
    """One of FIGURES with one line per algorithm and env: the mean of its runs interpolated onto a grid of the x
    range they all cover, shaded from the lowest run to the highest (and the greedy evaluations the same way)."""
    groups: dict = {}
    for r in runs:
        if y in r["cols"] and np.isfinite(r["cols"][y]).any():
            groups.setdefault((r["config"].get("algo", r["name"]), r["config"].get("env", "")), []).append(r)
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, ((algo, env), group) in enumerate(sorted(groups.items())):
        color, label = f"C{i % 10}", f"{algo} {env} ({len(group)} runs)"
        band(ax, [(r["cols"][x], r["cols"][y]) for r in group], color, label, "-")
        if y == "recent_return" and all("eval_return" in r["cols"] for r in group):
            band(ax, [greedy_points(r["cols"], x) for r in group], color, f"{algo} greedy", ":")
    return save(plt, fig, ax, out_dir, file, title, x, ylabel)


def band(ax, curves: list[tuple[np.ndarray, np.ndarray]], color: str, label: str, style: str) -> None:
    """The mean of curves (x, y) on the x range all of them cover (100 points), shaded min to max."""
    curves = [(cx[ok], cy[ok]) for cx, cy in curves if (ok := np.isfinite(cx) & np.isfinite(cy)).sum() >= 2]
    if not curves:
        return
    lo, hi = max(cx[0] for cx, _ in curves), min(cx[-1] for cx, _ in curves)
    if not hi > lo:
        return
    grid = np.linspace(lo, hi, 100)
    ys = np.stack([np.interp(grid, cx, cy) for cx, cy in curves])
    ax.plot(grid, ys.mean(axis=0), color=color, linestyle=style, label=label)
    ax.fill_between(grid, ys.min(axis=0), ys.max(axis=0), color=color, alpha=0.15)


def greedy_points(c: dict, x: str) -> tuple[np.ndarray, np.ndarray]:
    """Each greedy evaluation once: (its x, its mean return). x "env_frames": the frames of the weights it played
    (eval_env_steps scaled as env_frames is; without that column, as ES logs, the first row reporting it); x
    "time": the first row that reports it."""
    key = "eval_env_steps" if "eval_env_steps" in c else "eval_return"
    steps = c[key]
    first = np.flatnonzero(np.isfinite(steps) & np.concatenate([[True], steps[1:] != steps[:-1]]))
    if key == "eval_return":
        return c[x][first], c["eval_return"][first]
    if x == "time":
        return c["time"][first], c["eval_return"][first]
    per_step = np.nanmax(c["env_frames"]) / max(np.nanmax(c["env_steps"]), 1) if "env_steps" in c else 1.0
    return steps[first] * per_step, c["eval_return"][first]


def _last(a: np.ndarray) -> float:
    ok = a[np.isfinite(a)]
    return float(ok[-1]) if len(ok) else math.nan


def _mean(c: dict, k: str) -> float:
    a = c.get(k, np.array([]))
    return float(np.mean(a[np.isfinite(a)])) if np.isfinite(a).any() else math.nan


def summary_md(runs: list[dict], figures: list[Path]) -> str:
    lines = ["# Report", "", "| run | algo | env | ranks | env frames | updates | wall time (s) | final return | "
             "best return | mean frames/s | mean updates/s |", "|" + "---|" * 11]
    for r in runs:
        c, cfg = r["cols"], r["config"]
        ret = c["recent_return"]
        best = float(np.nanmax(ret)) if np.isfinite(ret).any() else math.nan
        lines.append(f"| {r['name']} | {cfg.get('algo', '?')} | {cfg.get('env', '?')} | {cfg.get('world_size', '?')} "
                     f"| {_last(c['env_frames']):,.0f} | {_last(c.get('updates', np.array([np.nan]))):,.0f} "
                     f"| {_last(c['time']):.1f} | {_last(ret):.1f} | {best:.1f} "
                     f"| {_mean(c, 'frames_per_s'):,.0f} | {_mean(c, 'updates_per_s'):,.1f} |")
    returns = [_last(r["cols"]["recent_return"]) for r in runs]
    if len(runs) > 1 and all(np.isfinite(returns)):
        lines += ["", f"Final return over {len(runs)} runs: mean {np.mean(returns):.1f}, min {np.min(returns):.1f}, "
                      f"max {np.max(returns):.1f}."]
    lines += ["", "Figures: " + ", ".join(f"[{p.stem}]({p.name})" for p in figures), ""]
    return "\n".join(lines)
