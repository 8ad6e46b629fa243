"""`drlmpi eval --video DIR`: one playable MP4 per greedy episode, with as many frames as the episode had steps,
on classic control (gymnasium's render), MinAtar (the grid in colour) and Atari (the agent's frames); one line and
exit 2 where the video extra is missing."""

import json
import sys

import imageio.v2 as iio  # (the test extra installs the video extra's packages)
import numpy as np
import pytest
from helpers import DRLMPI, run

from drlmpi import cli
from drlmpi.evaluate import evaluate

SIZES = {"CartPole-v1": (400, 600, 3), "MinAtar/Breakout-v1": (160, 160, 3), "ALE/Pong-v5": (168, 168, 3)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A short serial DQN run on each env (its final checkpoint is all eval needs)."""
    out = {}
    for env_id in SIZES:
        d = tmp_path_factory.mktemp("run")
        r = run([DRLMPI, "--algo", "dqn", "--env", env_id, "--total-env-steps", "300", "--run-dir", str(d)],
                timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        out[env_id] = d
    return out


@pytest.mark.parametrize("env_id", sorted(SIZES))
def test_each_episode_is_a_playable_mp4_with_one_frame_per_step(env_id, runs, tmp_path):
    episodes = 1 if env_id.startswith("ALE/") else 2
    result = evaluate(str(runs[env_id]), episodes, video=str(tmp_path / "video"))
    assert len(result["videos"]) == episodes == result["episodes"]
    for k, v in enumerate(result["videos"]):
        assert v["file"] == str(tmp_path / "video" / f"episode-{k}.mp4") and v["frames"] == v["steps"] > 0
        frames = list(iio.get_reader(v["file"]).iter_data())  # decoded back through ffmpeg
        assert len(frames) == v["steps"] and frames[0].shape == SIZES[env_id], (len(frames), frames[0].shape)
        assert np.ptp(np.stack(frames)) > 0  # not a blank picture
    returns = [v["return"] for v in result["videos"]]
    assert (min(returns), max(returns)) == (result["min_return"], result["max_return"])


def test_the_eval_command_writes_the_videos_and_lists_them(runs, tmp_path):
    r = run([DRLMPI, "eval", str(runs["CartPole-v1"]), "--episodes", "1", "--video", str(tmp_path), "--json"])
    assert r.returncode == 0, r.stderr
    videos = json.loads(r.stdout.strip().splitlines()[-1])["videos"]
    assert [v["file"] for v in videos] == [str(tmp_path / "episode-0.mp4")]


def test_without_the_video_extra_eval_video_is_one_line_and_exit_2(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "imageio", None)  # (import imageio raises ImportError)
    monkeypatch.delitem(sys.modules, "imageio.v2", raising=False)
    code = cli.main(["eval", str(runs["CartPole-v1"]), "--video", str(tmp_path / "v")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'drlmpi[video]'" in err[0], err
    assert not (tmp_path / "v").exists()
