"""Every algorithm with discrete actions runs end to end on a MinAtar game (each game at least once) with the
MinAtar preset (only the warm-up shortened), writes its checkpoint, and its policy evaluates on the game."""

import json

import pytest
from helpers import DRLMPI, ROOT, mpirun, run

from drlmpi.evaluate import evaluate

pytestmark = pytest.mark.mpi
ENV = {"PYTHONPATH": str(ROOT / "tests" / "envs")}
WARM = ["--set", "learning_starts=200"]  # value-based: the preset's 5,000 rows are longer than the run
# algo: (ranks, game, env steps, extra arguments)
# (Seaquest goes to ES, whose numpy policy plays fastest: a greedy submarine that never dives plays until the
# 27,000-step limit, envs.MINATAR_MAX_STEPS.)
# (The fewest ranks each layout takes: an MPI job's start-up is most of its cost here.)
RUNS = {"dqn": (1, "Breakout", 1_500, WARM), "apex": (3, "SpaceInvaders", 2_000, WARM),
        "gorila": (4, "Asterix", 2_000, WARM), "r2d2": (3, "Asterix", 2_000, ["--set", "learning_starts=20"]),
        "a2c": (1, "Freeway", 2_000, []), "a3c": (1, "Breakout", 2_000, []), "impala": (2, "SpaceInvaders", 2_000, []),
        "ga3c": (3, "Freeway", 2_000, []), "seed": (2, "Breakout", 2_000, []), "es": (1, "Seaquest", 3_000, []),
        "r2d3": (3, "Breakout", 2_000, ["--set", "learning_starts=20"])}


def demos(tmp_path, game: str) -> list[str]:
    out = tmp_path / "demos.h5"
    r = run([DRLMPI, "record", "--env", f"MinAtar/{game}-v1", "--policy", "scripted:minatar_random", "--episodes",
             "4", "--out", str(out)], timeout=120, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    return ["--set", f"demos={out}"]


@pytest.mark.parametrize("algo", sorted(RUNS))
def test_every_discrete_action_algorithm_trains_and_evaluates_on_minatar(algo, tmp_path):
    ranks, game, steps, extra = RUNS[algo]
    env_id, d = f"MinAtar/{game}-v1", tmp_path / "run"
    extra = [*extra, *(demos(tmp_path, game) if algo == "r2d3" else [])]
    r = mpirun(ranks, [DRLMPI, "--algo", algo, "--env", env_id, "--total-env-steps", str(steps), "--run-dir", str(d),
                       *extra], timeout=240, env=ENV)
    assert r.returncode == 0 and "done:" in r.stdout, r.stdout + r.stderr
    config = json.loads((d / "config.json").read_text())
    assert config["total_env_steps"] == steps and config["env"] == env_id
    result = evaluate(str(d), 2)  # (in this process: the `drlmpi eval` command has its own tests)
    assert result["episodes"] == 2 and result["mean_return"] >= 0, result  # MinAtar rewards are >= 0
