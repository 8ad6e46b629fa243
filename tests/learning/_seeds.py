"""Train one algorithm on three seeds with its defaults and evaluate each through `drlmpi eval --json`.

Each run is exactly `mpiexec -n N drlmpi --algo A --env CartPole-v1 --seed S`, in a fresh directory, so the
run directory is the default one under runs/."""

import json
import time

from helpers import DRLMPI, mpirun, run


def train_and_eval(tmp_path, algo: str, ranks: int, seeds=(0, 1, 2), episodes: int = 20) -> dict:
    """{seed: (greedy mean return over `episodes`, training wall seconds)}; prints each as it comes."""
    results = {}
    for seed in seeds:
        cwd = tmp_path / f"seed{seed}"
        cwd.mkdir()
        t0 = time.monotonic()
        r = mpirun(ranks, [DRLMPI, "--algo", algo, "--env", "CartPole-v1", "--seed", str(seed)], timeout=900,
                   cwd=cwd)
        wall = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        (run_dir,) = (cwd / "runs").iterdir()
        e = run([DRLMPI, "eval", str(run_dir), "--episodes", str(episodes), "--json"], timeout=300)
        assert e.returncode == 0, e.stderr
        results[seed] = (json.loads(e.stdout)["mean_return"], wall)
        print(f"{algo} seed {seed}: greedy mean return {results[seed][0]:.1f} over {episodes} episodes, "
              f"{wall:.0f} s wall", flush=True)
    return results
