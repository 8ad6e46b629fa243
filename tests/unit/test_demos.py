"""Demonstrations: `drlmpi record` from a function writes what the env did, R2D3 cuts them into sequences, and bad or
mismatched files, policies and configs give one line and exit 2."""

import sys

import h5py
import numpy as np
import pytest
from helpers import ROOT

from drlmpi import cli, demos
from drlmpi.algos import r2d3
from drlmpi.envs import spaces

sys.path.insert(0, str(ROOT / "tests" / "envs"))  # scripted:..., as PYTHONPATH gives it to a drlmpi process


def drlmpi(capsys, *args) -> tuple[int, str, str]:
    """`drlmpi ARGS` in this process (the command line's code path, minus the process): (exit code, out, err)."""
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_user_error(result, fragment):
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("drlmpi: error: ") and fragment in lines[0], err


@pytest.fixture(scope="module")
def mountain_car_demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos") / "mc.h5"
    assert cli.main(["record", "--env", "MountainCar-v0", "--policy", "scripted:mountain_car", "--episodes", "3",
                     "--out", str(out), "--seed", "5"]) == 0
    return out


def test_recorded_episodes_replay_in_the_env(mountain_car_demos):
    """Re-running each episode's actions in a fresh env from its recorded start state gives the recorded
    observations, rewards and ends: the file holds what happened, episode by episode."""
    import gymnasium as gym

    obs_space, act_space = spaces("MountainCar-v0")
    d = demos.load(mountain_car_demos, "MountainCar-v0", obs_space, act_space)
    assert d.episodes == 3 and len(d.returns) == 3 and d.episode_starts[0] == 0
    for k in range(d.episodes):
        ep = d.episode(k)
        env = gym.make("MountainCar-v0")
        env.reset(seed=0)
        env.unwrapped.state = ep["observations"][0].astype(np.float64)
        for t, a in enumerate(ep["actions"]):
            obs, rew, term, trunc, _ = env.step(int(a))
            nxt = ep["observations"][t + 1] if t + 1 < len(ep["actions"]) else ep["final_observation"]
            np.testing.assert_allclose(obs, nxt, atol=1e-4)  # (the start state is float32-rounded)
            assert rew == ep["rewards"][t] and term == ep["terminations"][t]
        assert ep["terminations"][-1] or ep["truncations"][-1]
        assert not (ep["terminations"][:-1] | ep["truncations"][:-1]).any()
        assert ep["rewards"].sum() == d.returns[k] and d.returns[k] > -200  # the scripted policy reaches the flag


def test_demo_sequences_are_dealt_over_shards(mountain_car_demos):
    cfg = r2d3.Config(env="MountainCar-v0", demos=str(mountain_car_demos))
    obs_space, act_space = spaces("MountainCar-v0")
    whole = r2d3.demo_sequences(cfg, obs_space, act_space, 0, 1)
    parts = [r2d3.demo_sequences(cfg, obs_space, act_space, s, 3) for s in range(3)]
    assert sum(len(p["action"]) for p in parts) == len(whole["action"]) > 0
    np.testing.assert_array_equal(parts[1]["obs"], whole["obs"][1::3])
    d = demos.load(mountain_car_demos, "MountainCar-v0", obs_space, act_space)
    starts = whole["burn"] == 0  # one sequence starts each episode, from its first observation
    assert starts.sum() == d.episodes and not whole["state"].any()
    np.testing.assert_allclose(whole["obs"][starts, 0], d.observations[d.episode_starts])
    # every step is learned from once: burn-in equals the overlap, so the learned parts tile the episodes
    assert int((whole["valid"].sum(1) - whole["burn"]).sum()) == len(d.actions)


def test_bad_demos_and_policies_one_line_exit_2(mountain_car_demos, tmp_path, capsys):
    """r2d3's config check reads every demo file on rank 0 before any MPI work (cli.prepare_train)."""
    base = ["--algo", "r2d3", "--total-env-steps", "100", "--run-dir", tmp_path / "r"]

    def train(*args):
        try:
            cli.prepare_train(cli.parse([str(a) for a in [*base, *args]]))
        except cli.UserError as e:
            print(f"drlmpi: error: {e}", file=sys.stderr)
            return 2, "", capsys.readouterr().err
        return 0, "", capsys.readouterr().err

    capsys.readouterr()
    assert_user_error(train("--env", "MountainCar-v0"), "r2d3 needs demonstrations")
    assert_user_error(train("--env", "CartPole-v1", "--set", f"demos={mountain_car_demos}"),
                      "was recorded on MountainCar-v0, this run is on CartPole-v1")
    assert_user_error(train("--env", "MountainCar-v0", "--set", "demos=/nonexistent.h5"), "not found")
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(mountain_car_demos.read_bytes()[:-100])
    assert_user_error(train("--env", "MountainCar-v0", "--set", f"demos={damaged}"), "damaged")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["actions"] = np.zeros(3)
    assert_user_error(train("--env", "MountainCar-v0", "--set", f"demos={plain}"), "not a drlmpi")
    cut = demos.load(mountain_car_demos, "MountainCar-v0", *spaces("MountainCar-v0"))
    cut.terminations[:] = cut.truncations[:] = False  # episodes that never end
    demos.save(tmp_path / "unended.h5", cut, "test")
    assert_user_error(train("--env", "MountainCar-v0", "--set", f"demos={tmp_path / 'unended.h5'}"),
                      "does not end (terminated or truncated) exactly at its last step")
    assert train("--env", "MountainCar-v0", "--set", f"demos={mountain_car_demos},{mountain_car_demos}")[0] == 0
    rec = ["record", "--env", "MountainCar-v0", "--episodes", "2", "--out", tmp_path / "x.h5"]
    assert_user_error(drlmpi(capsys, *rec, "--policy", "scripted:bad_shape"), "expected 2 integer actions")
    assert_user_error(drlmpi(capsys, *rec, "--policy", "scripted:nosuch"), "has no 'nosuch'")
    assert_user_error(drlmpi(capsys, *rec, "--policy", "nocolon"), "expected module:function")
    assert_user_error(drlmpi(capsys, *rec), "one of the arguments --checkpoint --policy is required")
    assert_user_error(drlmpi(capsys, *rec[:-2], "--out", tmp_path / "y.h5", "--checkpoint", damaged), "damaged")
    assert not (tmp_path / "x.h5").exists()


def crafted(path, good, **change):
    """A checksummed demonstrations file like `good` (a demos.Demos) with datasets or attributes changed (None drops
    one): what a user's own writer might produce."""
    from drlmpi import checkpoint

    def fill(f):
        attrs = {"kind": demos.KIND, "env": good.env, "complete": True}
        for k, v in attrs.items():
            if change.get(k, v) is not None:
                f.attrs[k] = change.get(k, v)
        for name in (*demos.STEP_FIELDS, "final_observations", "episode_starts", "returns"):
            if change.get(name, 0) is not None:
                f.create_dataset(name, data=change.get(name, getattr(good, name)))

    checkpoint.write_file(path, fill)
    return path


def test_crafted_demo_files_are_refused_before_the_job_in_one_line(mountain_car_demos, tmp_path):
    """Shapes and kinds of every array are checked against the env, so nothing fails later inside a shard."""
    obs_space, act_space = spaces("MountainCar-v0")
    good = demos.load(mountain_car_demos, "MountainCar-v0", obs_space, act_space)
    n, k = len(good.actions), good.episodes
    cases = {"no env attribute": ({"env": None}, "was recorded on no env"),
             "rewards [n, 2]": ({"rewards": np.zeros((n, 2), np.float32)}, "rewards is float32 (" + f"{n}, 2)"),
             "final observations of another shape": ({"final_observations": np.zeros((k, 3), np.float32)},
                                                     "final_observations is float32"),
             "too few final observations": ({"final_observations": good.final_observations[:-1]},
                                            "final_observations"),
             "float terminations": ({"terminations": good.terminations.astype(np.float32)}, "terminations"),
             "a group for a dataset": ({"returns": None}, "missing dataset"),
             "no episodes": ({"episode_starts": np.zeros(0, np.int64), "returns": np.zeros(0),
                              "final_observations": np.zeros((0, 2), np.float32)}, "inconsistent episode arrays")}
    for i, (what, (change, fragment)) in enumerate(cases.items()):
        path = crafted(tmp_path / f"c{i}.h5", good, **change)
        with pytest.raises(cli.UserError, match="demos: ") as e:
            demos.load(path, "MountainCar-v0", obs_space, act_space)
        assert fragment in str(e.value) and "\n" not in str(e.value), (what, str(e.value))
    assert demos.load(crafted(tmp_path / "same.h5", good), "MountainCar-v0", obs_space, act_space).episodes == k


def test_continuous_actions_are_recorded_checked_and_randomized(tmp_path, capsys):
    """A box of actions: float actions are stored as float32 [N, A] and load back; --epsilon replaces that fraction
    of them by uniform actions inside the bounds; actions outside the bounds are refused in one line."""
    out, noisy = tmp_path / "p.h5", tmp_path / "noisy.h5"
    rec = ["record", "--env", "Pendulum-v1", "--policy", "scripted:pendulum", "--episodes", "2", "--seed", "3"]
    assert drlmpi(capsys, *rec, "--out", out)[0] == 0
    assert drlmpi(capsys, *rec, "--out", noisy, "--epsilon", "0.5")[0] == 0
    obs_space, act_space = spaces("Pendulum-v1")
    d, n = demos.load(out, "Pendulum-v1", obs_space, act_space), demos.load(noisy, "Pendulum-v1", obs_space, act_space)
    assert d.actions.dtype == np.float32 and d.actions.shape == (400, 1) and d.episodes == 2
    np.testing.assert_array_equal(d.actions, np.clip(-0.5 * d.observations[:, 2:3], -2, 2))  # what the policy said
    policy = np.clip(-0.5 * n.observations[:, 2:3], -2, 2)
    random = ~np.isclose(n.actions, policy, atol=1e-6)[:, 0]
    assert 0.4 < random.mean() < 0.6 and (np.abs(n.actions) <= 2).all(), random.mean()
    assert abs(n.actions[random]).mean() > 0.7  # uniform on [-2, 2]: mean |a| 1; the policy's are small
    assert_user_error(drlmpi(capsys, *rec[:4], "scripted:pendulum_too_strong", *rec[5:], "--out", tmp_path / "x.h5"),
                      "expected 2 float actions of shape (1,) in [-2, 2]")
    assert_user_error(drlmpi(capsys, *rec, "--out", tmp_path / "x.h5", "--epsilon", "1.5"), "--epsilon must be in")
    assert not (tmp_path / "x.h5").exists()
