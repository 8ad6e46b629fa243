"""Train one algorithm on three seeds under mpiexec and evaluate each through `drlmpi eval --json`."""

import json
import time

from helpers import DRLMPI, mpirun, run


def train_and_eval(tmp_path, algo: str, ranks: int, steps: int, seeds=(0, 1, 2), episodes: int = 20) -> dict:
    """{seed: (greedy mean return over `episodes`, training wall seconds)}; prints each as it comes."""
    results = {}
    for seed in seeds:
        d = tmp_path / f"seed{seed}"
        t0 = time.monotonic()
        r = mpirun(ranks, [DRLMPI, "--algo", algo, "--env", "CartPole-v1", "--total-env-steps", str(steps),
                           "--seed", str(seed), "--run-dir", str(d)], timeout=900)
        wall = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        e = run([DRLMPI, "eval", str(d), "--episodes", str(episodes), "--json"], timeout=300)
        assert e.returncode == 0, e.stderr
        results[seed] = (json.loads(e.stdout)["mean_return"], wall)
        print(f"{algo} seed {seed}: greedy mean return {results[seed][0]:.1f} over {episodes} episodes, "
              f"{wall:.0f} s wall", flush=True)
    return results
