"""Train one algorithm on three seeds with its defaults and evaluate each through `drlmpi eval --json`.

Each run is exactly `mpiexec -n N drlmpi --algo A --env CartPole-v1 --seed S` (or the env and arguments given), in a
fresh directory, so the
run directory is the default one under runs/."""

import json
import time

from helpers import DRLMPI, mpirun, run


def train_and_eval(tmp_path, algo: str, ranks: int, seeds=(0, 1, 2), episodes: int = 20, env_id: str = "CartPole-v1",
                   env: dict | None = None, extra: tuple[str, ...] = ()) -> dict:
    """{seed: (greedy mean return over `episodes`, training wall seconds)}; prints each as it comes. env: extra
    environment variables (PYTHONPATH for a test env); extra: more drlmpi arguments."""
    results = {}
    for seed in seeds:
        cwd = tmp_path / f"seed{seed}"
        cwd.mkdir()
        t0 = time.monotonic()
        r = mpirun(ranks, [DRLMPI, "--algo", algo, "--env", env_id, "--seed", str(seed), *extra], timeout=1500,
                   cwd=cwd, env=env)
        wall = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        (run_dir,) = (cwd / "runs").iterdir()
        e = run([DRLMPI, "eval", str(run_dir), "--episodes", str(episodes), "--json", "--env", env_id], timeout=300,
                env=env)  # (--env named again: a module:Env id is imported only then)
        assert e.returncode == 0, e.stderr
        results[seed] = (json.loads(e.stdout)["mean_return"], wall)
        print(f"{algo} on {env_id} seed {seed}: greedy mean return {results[seed][0]:.1f} over {episodes} episodes, "
              f"{wall:.0f} s wall", flush=True)
    return results
