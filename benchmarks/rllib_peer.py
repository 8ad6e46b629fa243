"""RLlib's IMPALA or APPO (new API stack) on CartPole-v1 with N processes: its frames/s and its time to a greedy 475.

Runs under a Python that has `ray[rllib]` (the `rllib` extra, in its own virtual environment: RLlib pins its own
gymnasium); benchmarks/time_to_475.py calls it (`--algos rllib-impala,rllib-appo --rllib-python PATH`) beside
drlmpi's runs. The layout matches a drlmpi job of N ranks: N - 1 env runners (one CPU each) and the learner in the
driver process (num_learners=0), in a Ray instance told it has N CPUs, on one torch thread a process. The settings
are RLlib's tuned CartPole examples (tuned_examples/impala/cartpole_impala.py, tuned_examples/appo/cartpole_appo.py).

Every `--every` seconds of training the learner's module is copied; after training each copy, in order, plays 20
greedy episodes (the argmax action) on CartPole-v1 envs seeded as drlmpi's evaluation seeds them, and the first
copy whose mean return is >= 475 gives the time and env steps. frames/s: env steps sampled over the training's wall
time (after the algorithm is built); startup: ray.init and the build. Prints one JSON line.

Usage: python benchmarks/rllib_peer.py --algo impala|appo [--ranks 4] [--seed 0] [--every 2] [--max-seconds 300]
                                       [--max-steps 2000000]
"""

import argparse
import copy
import json
import os
import time

import numpy as np

SETTINGS = {  # RLlib's tuned CartPole examples
    "impala": {"training": {"train_batch_size_per_learner": 500, "grad_clip": 40.0, "grad_clip_by": "global_norm",
                            "lr": 0.0005, "vf_loss_coeff": 0.05, "entropy_coeff": 0.0},
               "model": {"vf_share_layers": True}},
    "appo": {"training": {"train_batch_size_per_learner": 1000, "vf_loss_coeff": 0.05, "entropy_coeff": 0.01,
                          "num_epochs": 2, "lr": 0.00075, "minibatch_size": 250},
             "model": {"fcnet_hiddens": [32]}},
}


def build(algo: str, ranks: int, seed: int, every: float):
    from ray.rllib.algorithms.appo import APPOConfig
    from ray.rllib.algorithms.impala import IMPALAConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    s = SETTINGS[algo]
    config = ((IMPALAConfig if algo == "impala" else APPOConfig)()
              .environment("CartPole-v1")
              .env_runners(num_env_runners=ranks - 1, num_cpus_per_env_runner=1)
              .learners(num_learners=0)
              .training(**s["training"])
              .rl_module(model_config=DefaultModelConfig(**s["model"]))
              .reporting(min_time_s_per_iteration=min(every, 10.0))  # (a copy can be taken after each iteration)
              .debugging(seed=seed))
    return config.build_algo()


def greedy_return(module, episodes: int = 20) -> float:
    """Mean return of `episodes` greedy episodes, 8 envs at a time seeded 12345 + i (drlmpi.evaluate's seeding)."""
    import gymnasium as gym
    import torch

    env = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(8)],
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs, _ = env.reset(seed=12345)
    returns, run = [], np.zeros(8)
    while len(returns) < episodes:
        with torch.no_grad():
            out = module.forward_inference({"obs": torch.as_tensor(obs, dtype=torch.float32)})
        obs, reward, term, trunc, _ = env.step(out["action_dist_inputs"].argmax(-1).numpy())
        run += reward
        for i in np.flatnonzero(term | trunc):
            returns.append(float(run[i]))
            run[i] = 0.0
    env.close()
    return float(np.mean(returns[:episodes]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--algo", choices=sorted(SETTINGS), required=True)
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=float, default=2.0)
    ap.add_argument("--max-seconds", type=float, default=300.0)
    ap.add_argument("--max-steps", type=int, default=2_000_000)
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # (before torch and Ray start: their worker processes inherit it)
    import ray
    import torch

    torch.set_num_threads(1)
    t_start = time.monotonic()
    ray.init(num_cpus=a.ranks, include_dashboard=False, log_to_driver=False)
    algo = build(a.algo, a.ranks, a.seed, a.every)
    module = algo.learner_group._learner.module["default_policy"]  # the learner in this process
    startup, t0 = time.monotonic() - t_start, time.monotonic()
    copies, last, steps = [], t0, 0
    while time.monotonic() - t0 < a.max_seconds and steps < a.max_steps:
        algo.train()
        steps = int(algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"), default=0))
        if time.monotonic() - last >= a.every:
            last = time.monotonic()
            copies.append((last - t0, steps, copy.deepcopy(module.state_dict())))
    seconds = time.monotonic() - t0
    copies.append((seconds, steps, copy.deepcopy(module.state_dict())))
    algo.stop()
    ray.shutdown()
    hit = None
    for sec, n, state in copies:
        module.load_state_dict(state)
        if (ret := greedy_return(module)) >= 475:
            hit = [sec, n, ret]
            break
    module.load_state_dict(copies[-1][2])
    print(json.dumps({"algo": f"rllib-{a.algo}", "hit": hit, "final": greedy_return(module), "steps": steps,
                      "seconds": seconds, "frames_per_s": steps / seconds, "startup_s": startup}), flush=True)


if __name__ == "__main__":
    main()
