"""HDF5 checkpoints: round trip, atomic writes, clear errors for bad files."""

import h5py
import numpy as np
import pytest

from drlmpi import checkpoint
from drlmpi.errors import CheckpointError

W = {"online": {"torso.net.0.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "head.bias": np.ones(2)}}


def write(path):
    return checkpoint.save(path, algo="dqn", env="CartPole-v1", config={"lr": 0.1, "hidden": [8]},
                           weights=W, counters={"env_steps": 100, "updates": 7})


def test_round_trip(tmp_path):
    p = write(tmp_path / "checkpoints" / "ckpt-000000000100.h5")
    c = checkpoint.load(p)
    assert (c.algo, c.env, c.config) == ("dqn", "CartPole-v1", {"lr": 0.1, "hidden": [8]})
    assert c.counters["env_steps"] == 100 and c.counters["updates"] == 7
    for k, v in W["online"].items():
        np.testing.assert_array_equal(c.weights["online"][k], v)
    assert [x.name for x in (tmp_path / "checkpoints").iterdir()] == [p.name], "temporary file left behind"


def test_run_dir_resolves_to_newest(tmp_path):
    write(tmp_path / "checkpoints" / "ckpt-000000000100.h5")
    write(tmp_path / "checkpoints" / "ckpt-000000002000.h5")
    assert checkpoint.resolve(tmp_path).name == "ckpt-000000002000.h5"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.resolve(tmp_path / "empty")


def test_truncated_file(tmp_path):
    p = write(tmp_path / "a.h5")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable HDF5 file"):
        checkpoint.load(p)


def test_garbage_and_foreign_files(tmp_path):
    g = tmp_path / "garbage.h5"
    g.write_bytes(b"\x00" * 1000)
    with pytest.raises(CheckpointError, match="not a readable HDF5"):
        checkpoint.load(g)
    f = tmp_path / "foreign.h5"
    with h5py.File(f, "w") as h:
        h["x"] = 1
    with pytest.raises(CheckpointError, match="not a drlmpi checkpoint"):
        checkpoint.load(f)


def test_incomplete_and_newer_version(tmp_path):
    p = write(tmp_path / "a.h5")
    with h5py.File(p, "r+") as h:
        h.attrs["complete"] = False
    with pytest.raises(CheckpointError, match="incomplete"):
        checkpoint.load(p)
    p = write(tmp_path / "b.h5")
    with h5py.File(p, "r+") as h:
        h.attrs["version"] = 99
    with pytest.raises(CheckpointError, match="newer"):
        checkpoint.load(p)
    p = write(tmp_path / "c.h5")
    with h5py.File(p, "r+") as h:
        del h["weights"]
    with pytest.raises(CheckpointError, match="damaged"):
        checkpoint.load(p)
