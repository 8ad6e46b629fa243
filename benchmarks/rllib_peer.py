"""RLlib's IMPALA or APPO (new API stack) with N processes: its frames/s, and on CartPole-v1 its time to a greedy 475.

Runs under a Python that has `ray[rllib]` (the `rllib` extra, in its own virtual environment: RLlib pins its own
gymnasium); benchmarks/time_to_475.py calls it (`--algos rllib-impala,rllib-appo --rllib-python PATH`) beside
drlmpi's runs. The layout matches a drlmpi job of N ranks: N - 1 env runners (one CPU each) and the learner in the
driver process (num_learners=0), in a Ray instance told it has N CPUs, on one torch thread a process. The settings
are RLlib's tuned CartPole examples (tuned_examples/impala/cartpole_impala.py, tuned_examples/appo/cartpole_appo.py).

Every `--every` seconds of training the learner's module is copied; after training each copy, in order, plays 20
greedy episodes (the argmax action) on CartPole-v1 envs seeded as drlmpi's evaluation seeds them, and the first
copy whose mean return is >= 475 gives the time and env steps. frames/s: env steps sampled over the training's wall
time (after the algorithm is built); frames trained/s: the env steps its learner trained on over that time
(RLlib's learner may leave some of the sampled ones untrained); startup: ray.init and the build. Prints one JSON line.

`--env MinAtar/<Game>-v1` or `--env ALE/<Game>-v5` measures frames/s only (no evaluation): MinAtar's grids as float32
[10, 10, C] (RLlib's encoder takes no bool) through the MinAtar paper's network (a 3x3 convolution of 16 channels,
then 128 units: RLlib's CNN encoder pads "same", drlmpi's network does not); Atari through RLlib's
`wrap_atari_for_new_api_stack` (ALE frame skip 1, then its max-and-skip 4, 84x84 grey, 4 frames stacked, 30
no-op starts, sticky actions 0.25 as ALE v5 has them, observations scaled to [-1, 1] float32) and the Nature CNN's
filters with a 512-unit head.

Usage: python benchmarks/rllib_peer.py --algo impala|appo [--env CartPole-v1] [--ranks 4] [--seed 0] [--every 2]
                                       [--max-seconds 300] [--max-steps 2000000] [--envs-per-runner 1]
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


IMAGE_MODELS = {  # env id prefix -> the network drlmpi's preset has there, in RLlib's terms
    "MinAtar/": {"conv_filters": [[16, 3, 1]], "head_fcnet_hiddens": [128], "vf_share_layers": True},
    "ALE/": {"conv_filters": [[32, 8, 4], [64, 4, 2], [64, 3, 1]], "head_fcnet_hiddens": [512],
             "vf_share_layers": True},
}


def make_env(env_id: str):
    """An image env as RLlib's env runners get it (see the module's docstring)."""
    import gymnasium as gym

    if env_id.startswith("MinAtar/"):
        from minatar.gym import register_envs

        register_envs()
        env = gym.make(env_id)
        space = gym.spaces.Box(0.0, 1.0, env.observation_space.shape, np.float32)
        return gym.wrappers.TransformObservation(env, lambda o: o.astype(np.float32), space)
    import ale_py
    from ray.rllib.env.wrappers.atari_wrappers import wrap_atari_for_new_api_stack

    gym.register_envs(ale_py)
    return wrap_atari_for_new_api_stack(gym.make(env_id, frameskip=1), dim=84, framestack=4)


def build(algo: str, env_id: str, ranks: int, seed: int, every: float, envs: int = 1):
    from ray.rllib.algorithms.appo import APPOConfig
    from ray.rllib.algorithms.impala import IMPALAConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.tune.registry import register_env

    s = SETTINGS[algo]
    model = s["model"]
    if env_id != "CartPole-v1":
        register_env("image-env", lambda _: make_env(env_id))
        model = next(m for prefix, m in IMAGE_MODELS.items() if env_id.startswith(prefix))
    config = ((IMPALAConfig if algo == "impala" else APPOConfig)()
              .environment("CartPole-v1" if env_id == "CartPole-v1" else "image-env",
                           clip_rewards=env_id.startswith("ALE/"))
              .env_runners(num_env_runners=ranks - 1, num_cpus_per_env_runner=1, num_envs_per_env_runner=envs)
              .learners(num_learners=0)
              .training(**s["training"])
              .rl_module(model_config=DefaultModelConfig(**model))
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


TRAINED = (("learners", "__all_modules__", "num_env_steps_trained_lifetime"),
           ("learners", "default_policy", "num_module_steps_trained_lifetime"))  # the first RLlib has


def train(algo, module, a) -> tuple[list, int, float, int]:
    """algo.train() until --max-seconds or --max-steps: ([(seconds, steps, a copy of the module's state) every
    --every seconds of training and at the end (CartPole only)], steps sampled, seconds, steps trained)."""
    t0 = time.monotonic()
    copies, last, steps, trained = [], t0, 0, 0
    while time.monotonic() - t0 < a.max_seconds and steps < a.max_steps:
        algo.train()
        steps = int(algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"), default=0))
        trained = max(int(algo.metrics.peek(k, default=0)) for k in TRAINED)
        if a.env == "CartPole-v1" and time.monotonic() - last >= a.every:
            last = time.monotonic()
            copies.append((last - t0, steps, copy.deepcopy(module.state_dict())))
    seconds = time.monotonic() - t0
    if a.env == "CartPole-v1":
        copies.append((seconds, steps, copy.deepcopy(module.state_dict())))
    return copies, steps, seconds, trained


def first_hit(copies: list, module) -> list | None:
    """[seconds, steps, greedy return] of the first copy whose greedy return is >= 475, or None."""
    for sec, n, state in copies:
        module.load_state_dict(state)
        if (ret := greedy_return(module)) >= 475:
            return [sec, n, ret]
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--algo", choices=sorted(SETTINGS), required=True)
    ap.add_argument("--env", default="CartPole-v1")
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=float, default=2.0)
    ap.add_argument("--max-seconds", type=float, default=300.0)
    ap.add_argument("--max-steps", type=int, default=2_000_000)
    ap.add_argument("--envs-per-runner", type=int, default=1, help="RLlib's num_envs_per_env_runner (its default: 1)")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # (before torch and Ray start: their worker processes inherit it)
    import ray
    import torch

    torch.set_num_threads(1)
    t_start = time.monotonic()
    ray.init(num_cpus=a.ranks, include_dashboard=False, log_to_driver=False)
    algo = build(a.algo, a.env, a.ranks, a.seed, a.every, a.envs_per_runner)
    module = algo.learner_group._learner.module["default_policy"]  # the learner in this process
    startup = time.monotonic() - t_start
    copies, steps, seconds, trained = train(algo, module, a)
    algo.stop()
    ray.shutdown()
    out = {"algo": f"rllib-{a.algo}", "env": a.env, "envs_per_runner": a.envs_per_runner, "steps": steps,
           "seconds": seconds, "frames_per_s": steps / seconds, "frames_trained_per_s": trained / seconds,
           "startup_s": startup}
    if copies:
        out["hit"] = first_hit(copies, module)
        module.load_state_dict(copies[-1][2])
        out["final"] = greedy_return(module)
    print(json.dumps(out), flush=True)
    os._exit(0)  # (past the interpreter's teardown, where Ray's core worker can abort after an Atari run)


if __name__ == "__main__":
    main()
