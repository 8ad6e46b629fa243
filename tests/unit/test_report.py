"""drlmpi report: one PNG per metric that some run has, every run overlaid, a summary; bad run dirs refused."""

import csv
import json

import matplotlib.image
import pytest

from drlmpi import cli
from drlmpi.report import FIGURES

COLUMNS = ["time", "env_steps", "env_frames", "frames_per_s", "updates", "updates_per_s", "recent_return", "loss",
           "replay_fill", "policy_lag", "actor_fps_min", "actor_fps_mean", "actor_fps_max"]


def fake_run(d, algo, seed, columns=COLUMNS, rows=40):
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"algo": algo, "env": "CartPole-v1", "world_size": 4, "seed": seed}))
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for i in range(rows):
            w.writerow({c: (i * 10 if c == "time" else i * 1000 if c.startswith("env") else i + seed + 1.5)
                        for c in columns})
    return d


def test_report_overlays_runs_one_figure_per_metric(tmp_path, capsys):
    runs = [fake_run(tmp_path / f"seed{s}", "apex", s) for s in range(3)]
    dqn = fake_run(tmp_path / "dqn", "dqn", 0, [c for c in COLUMNS if not c.startswith(("policy", "actor"))])
    out = tmp_path / "report"
    assert cli.main(["report", *map(str, runs), str(dqn), "--out", str(out)]) == 0
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert pngs == sorted(f[0] for f in FIGURES)  # every metric is in some run: one figure each
    for p in out.glob("*.png"):
        img = matplotlib.image.imread(p)  # decodes
        assert img.shape[0] > 100 and img.shape[1] > 100
    summary = (out / "summary.md").read_text()
    assert all(f"| seed{s} | apex |" in summary for s in range(3)) and "| dqn | dqn |" in summary
    assert "Final return over 4 runs" in summary


def test_report_leaves_out_metrics_no_run_has(tmp_path):
    d = fake_run(tmp_path / "a", "dqn", 0, ["time", "env_steps", "env_frames", "recent_return"])
    assert cli.main(["report", str(d)]) == 0
    assert sorted(p.stem for p in (d / "report").glob("*.png")) == ["return_vs_steps", "return_vs_time"]


@pytest.mark.parametrize("content", [None, "", "a,b\n1,2\n", "time,env_frames,recent_return\nx,1,2\n", "\x00\xff"])
def test_bad_run_dirs_one_line_exit_2(tmp_path, capsys, content):
    d = tmp_path / "bad"
    d.mkdir()
    if content is not None:
        (d / "metrics.csv").write_bytes(content.encode("latin-1"))
    assert cli.main(["report", str(d)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("drlmpi: error: "), err


def test_population_run_reports_its_members_scores_and_hyperparameters(tmp_path):
    from drlmpi.algos.pbt import write_records

    d = tmp_path / "pbt-run"
    for m in range(3):
        fake_run(d / f"member-{m}", "dqn", m, ["time", "env_steps", "env_frames", "recent_return"])
    cols = ["generation", "member", "env_steps", "score", "parent", "copy_ms", "updates", "hp_lr"]
    rows = [{"generation": g, "member": m, "env_steps": 1000 * (g + 1), "score": 10.0 * g + m,
             "parent": 2 if (g, m) == (1, 0) else -1, "copy_ms": 1.0, "updates": 5, "hp_lr": 10.0 ** (-6 + 2 * m)}
            for g in range(3) for m in range(3)]
    write_records(d, cols, rows)
    assert len((d / "lineage.jsonl").read_text().splitlines()) == 1
    out = tmp_path / "report"
    assert cli.main(["report", str(d), "--out", str(out)]) == 0
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert pngs == ["hparams", "population", "return_vs_steps", "return_vs_time"], pngs
    summary = (out / "summary.md").read_text()
    assert all(f"| pbt-run/member-{m} | dqn |" in summary for m in range(3)), summary
    fake_run(d / "member-foo", "dqn", 9, ["time", "env_steps", "env_frames", "recent_return"])  # not a member
    assert cli.main(["report", str(d), "--out", str(out)]) == 0
    assert "member-foo" not in (out / "summary.md").read_text()


def test_a_damaged_population_file_is_one_line(tmp_path, capsys):
    d = fake_run(tmp_path / "pop" / "member-0", "dqn", 0).parent
    for content in ("generation,member\n0,x\n", "a,b\n1,2\n"):
        (d / "population.csv").write_text(content)
        assert cli.main(["report", str(d)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "population.csv" in err, err


def test_each_greedy_evaluation_is_drawn_once_at_its_weights_frames_and_when_it_finished():
    import numpy as np

    from drlmpi.report import greedy_points

    nan = float("nan")
    c = {"time": np.array([1.0, 2, 3, 4, 5]), "env_steps": np.array([100.0, 200, 300, 400, 500]),
         "env_frames": np.array([400.0, 800, 1200, 1600, 2000]),  # (4 frames a step: Atari)
         "eval_return": np.array([nan, 10, 10, 30, 30]), "eval_env_steps": np.array([nan, 150, 150, 350, 350])}
    x, y = greedy_points(c, "env_frames")
    assert x.tolist() == [600, 1400] and y.tolist() == [10, 30]
    x, y = greedy_points(c, "time")
    assert x.tolist() == [2, 4] and y.tolist() == [10, 30]


def test_with_seeds_each_algorithm_is_one_line_its_seeds_mean_shaded_min_to_max(tmp_path, monkeypatch):
    from drlmpi import report as rep

    lines = []
    real_band = rep.band
    monkeypatch.setattr(rep, "band", lambda ax, curves, color, label, style: (
        lines.append((label, style, curves)), real_band(ax, curves, color, label, style)))
    runs = [fake_run(tmp_path / f"apex{s}", "apex", s) for s in range(3)] + [fake_run(tmp_path / "dqn", "dqn", 0)]
    out = tmp_path / "report"
    assert cli.main(["report", *map(str, runs), "--out", str(out), "--seeds"]) == 0
    assert (out / "return_vs_steps.png").exists()
    labels = [label for label, _, _ in lines if label.endswith("runs)")]
    assert "apex CartPole-v1 (3 runs)" in labels and "dqn CartPole-v1 (1 runs)" in labels

    class Ax:
        def plot(self, x, y, **kw):
            self.mean = (x, y)

        def fill_between(self, x, lo, hi, **kw):
            self.lo, self.hi = lo, hi

    import numpy as np

    ax, x = Ax(), np.arange(10.0)
    real_band(ax, [(x, x), (x + 0.5, x + 2)], "C0", "two", "-")  # the common range: [0.5, 9]
    grid, mean = ax.mean
    assert grid[0] == 0.5 and grid[-1] == 9 and np.allclose(mean, grid + 0.75)
    assert np.allclose(ax.lo, grid) and np.allclose(ax.hi, grid + 1.5)


def test_a_run_whose_greedy_returns_come_without_their_env_steps_is_drawn_too(tmp_path):
    """ES logs eval_return (every eval_generations generations) but no eval_env_steps."""
    d = fake_run(tmp_path / "es", "es", 0, ["time", "env_steps", "env_frames", "recent_return", "eval_return"])
    out = tmp_path / "report"
    assert cli.main(["report", str(d), "--out", str(out)]) == 0
    assert cli.main(["report", str(d), "--out", str(out), "--seeds"]) == 0
    assert (out / "return_vs_steps.png").exists()
