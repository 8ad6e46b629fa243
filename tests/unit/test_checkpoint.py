"""HDF5 checkpoints: the file format (checksum, atomic writes, pruning, clear errors), and the round-trip
contract every algorithm meets: save, load, identical networks, optimizer state, RNG streams and counters."""

import copy

import h5py
import numpy as np
import pytest
import torch

from drlmpi import algos, checkpoint, lifecycle
from drlmpi.checkpoint import State
from drlmpi.comm.checkpoint import rng_state
from drlmpi.envs import spaces
from drlmpi.errors import CheckpointError
from drlmpi.nets import ActorCritic, RecurrentQNetwork, StateActionQ
from drlmpi.ops.optim import FlatOptimizer
from drlmpi.replay import PrioritizedReplay, transition_fields
from drlmpi.replay.plane import restore_shard, save_part

NETS = {"online": {"torso.net.0.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "head.bias": np.ones(2)}}


def state(**kw) -> State:
    return State(algo="dqn", env="CartPole-v1", config={"lr": 0.1, "hidden": [8]},
                 counters={"env_steps": 100, "updates": 7}, nets=NETS,
                 rng={"serial-0": rng_state(np.random.default_rng(1))},
                 metrics={"time": np.arange(3.0), "recent_return": np.array([1.0, np.nan, 3.0])}, returns=[1.0, 3.0],
                 layout={"roles": ["serial"], "hosts": ["h"]}, **kw)


def write(directory, env_steps=100, ckpt_id=1) -> checkpoint.Path:
    return checkpoint.save(directory / "checkpoints" / checkpoint.name_of(env_steps, ckpt_id), state(id=ckpt_id))


def test_file_round_trip(tmp_path):
    p = write(tmp_path)
    c = checkpoint.load(p)
    assert (c.algo, c.env, c.config, c.id) == ("dqn", "CartPole-v1", {"lr": 0.1, "hidden": [8]}, 1)
    assert c.counters == {"env_steps": 100, "updates": 7} and c.returns == [1.0, 3.0]
    for k, v in NETS["online"].items():
        np.testing.assert_array_equal(c.nets["online"][k], v)
    np.testing.assert_array_equal(c.metrics["recent_return"], [1.0, np.nan, 3.0])
    assert c.rng["serial-0"]["numpy"] == np.random.default_rng(1).bit_generator.state
    assert [x.name for x in (tmp_path / "checkpoints").iterdir()] == [p.name], "temporary file left behind"
    with h5py.File(p, "r") as f:  # plain h5py reads it (the user block is skipped)
        assert f.attrs["algo"] == "dqn" and f["nets/online/head.bias"].shape == (2,)


def test_every_changed_byte_is_refused(tmp_path):
    p = write(tmp_path)
    data = bytearray(p.read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(0, len(data), 30):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        p.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError):
            checkpoint.load(p)


def test_newest_and_prune(tmp_path):
    for steps, i in ((100, 1), (2000, 2), (2000, 3), (3000, 4)):
        write(tmp_path, steps, i)
        (tmp_path / "checkpoints" / f"parts-{i:06d}").mkdir()
    (tmp_path / "checkpoints" / "parts-000005").mkdir()  # being written: newer than every main file
    assert checkpoint.resolve(tmp_path).name == checkpoint.name_of(3000, 4)
    checkpoint.prune(tmp_path / "checkpoints", 2)
    left = sorted(x.name for x in (tmp_path / "checkpoints").iterdir())
    assert left == [checkpoint.name_of(2000, 3), checkpoint.name_of(3000, 4), "parts-000003", "parts-000004",
                    "parts-000005"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.resolve(tmp_path / "empty")


def test_resume_auto_skips_a_damaged_newest(tmp_path):
    write(tmp_path, 100, 1)
    p = write(tmp_path, 200, 2)
    p.write_bytes(p.read_bytes()[:-10])
    assert lifecycle.resume_state("auto", str(tmp_path)).id == 1
    assert lifecycle.resume_state("auto", str(tmp_path / "fresh")) is None


def test_bad_files(tmp_path):
    g = tmp_path / "garbage.h5"
    g.write_bytes(b"\x00" * 1000)
    with pytest.raises(CheckpointError, match="not a drlmpi checkpoint"):
        checkpoint.load(g)
    f = tmp_path / "foreign.h5"
    with h5py.File(f, "w") as h:
        h["x"] = 1
    with pytest.raises(CheckpointError, match="without its checksum"):
        checkpoint.load(f)
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "missing.h5")
    p = write(tmp_path)
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoint.load(p)


def test_incomplete_and_other_version(tmp_path):
    p = tmp_path / "a.h5"
    checkpoint.write_file(p, lambda f: f.attrs.update({"algo": "dqn"}))  # a valid file without the marker
    with pytest.raises(CheckpointError, match="incomplete"):
        checkpoint.load(p)
    checkpoint.write_file(p, lambda f: f.attrs.update({"version": 99}))
    with pytest.raises(CheckpointError, match="format version 99"):
        checkpoint.load(p)


def test_part_from_another_checkpoint_is_refused(tmp_path):
    d = tmp_path / "checkpoints"
    sha = checkpoint.save_part(d / checkpoint.part_file(1, "replay-0"), "replay", {"size": 0}, {"x": np.zeros(3)})
    s = state(id=1, parts={"replay-0": {"file": checkpoint.part_file(1, "replay-0"), "sha256": sha}})
    checkpoint.save(d / checkpoint.name_of(100, 1), s)
    checkpoint.load(tmp_path)
    checkpoint.save_part(d / checkpoint.part_file(1, "replay-0"), "replay", {"size": 0}, {"x": np.ones(3)})
    with pytest.raises(CheckpointError, match="another checkpoint"):
        checkpoint.load(tmp_path)


# ---- the round-trip contract, for every algorithm -------------------------------------------------------


class _Log:  # what lifecycle.snapshot reads of a RunLog
    returns = [5.0, 7.0]

    def wall_time(self):
        return 12.5

    def history(self):
        return {"time": np.array([1.0, 2.0])}


def trained(module, cfg):
    """The algorithm's networks and Adam after a few steps on random batches, so every state is non-trivial."""
    obs_space, act_space = spaces(cfg.env)
    net = module.build_net(cfg, obs_space, act_space)
    target = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-5)
    for _ in range(3):
        opt.zero_grad()
        if isinstance(net, ActorCritic):  # time-major [T, B, ...] -> (logits, values, state)
            logits, values, _ = net(torch.randn(2, 5, *obs_space.shape))
            (logits.pow(2).mean() + values.pow(2).mean()).backward()
        elif isinstance(net, RecurrentQNetwork):  # [T, B, ...], state -> (Q, state)
            net(torch.randn(3, 5, *obs_space.shape), net.initial_state(5))[0].pow(2).mean().backward()
        elif isinstance(net, StateActionQ):  # (obs [B, ...], action [B, A]) -> Q [B]
            net(torch.randn(5, *obs_space.shape), torch.rand(5, *act_space.shape)).pow(2).mean().backward()
        else:
            net(torch.randn(5, *obs_space.shape)).pow(2).mean().backward()
        opt.step()
    return net, target, opt


def test_round_trip_covers_every_algorithm():
    assert sorted(algos.ALGOS) == sorted(ROUND_TRIP + ["pbt"])  # pbt: tests/unit/test_pbt_ops.py


# every registered algorithm; a new one is added here (checked above)
ROUND_TRIP = ["dqn", "apex", "gorila", "a2c", "a3c", "impala", "ga3c", "seed", "r2d2", "r2d3", "qtopt", "es"]
ENV = {"qtopt": "Pendulum-v1"}  # continuous actions; the others run on CartPole-v1


@pytest.mark.parametrize("algo", ROUND_TRIP)
def test_round_trip(algo, tmp_path):
    """save -> load -> restore: identical networks, optimizer state, RNG streams (numpy and torch), counters."""
    module = algos.get(algo)
    cfg = module.Config(env=ENV.get(algo, "CartPole-v1"), run_dir=str(tmp_path))
    torch.manual_seed(3)
    net, target, opt = trained(module, cfg)
    gen = np.random.default_rng(11)
    gen.random(7)
    torch.rand(3)
    s = lifecycle.snapshot(algo, cfg, _Log(), {"env_steps": 1234, "updates": 56}, {"online": net, "target": target},
                           {"adam": opt}, gen, "learner-0", {"roles": ["learner"]})
    path = checkpoint.save(tmp_path / checkpoint.name_of(1234, 1), s)
    expected_np, expected_torch = gen.random(5), torch.rand(4)  # the streams' continuations

    loaded = checkpoint.load(path)
    net2, target2, opt2 = trained(module, cfg)  # other values, same shapes
    updates = lifecycle.restore_learner(loaded, {"online": net2, "target": target2}, {"adam": opt2})
    gen2 = np.random.default_rng(99)
    assert lifecycle.restore_rng(loaded, "learner-0", gen2)
    np.testing.assert_array_equal(gen2.random(5), expected_np)
    torch.testing.assert_close(torch.rand(4), expected_torch, rtol=0, atol=0)
    assert updates == 56 and loaded.env_steps == 1234 and loaded.counters["wall_time"] == 12.5
    for a, b in ((net, net2), (target, target2)):
        for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
            assert k == k2 and torch.equal(v, v2)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for i in s1["state"]:
        for k in s1["state"][i]:
            assert torch.equal(s1["state"][i][k], s2["state"][i][k]), (i, k)
    assert [g["lr"] for g in s1["param_groups"]] == [g["lr"] for g in s2["param_groups"]]
    from drlmpi import config

    assert config.from_dict(module.Config, loaded.config) == cfg


def test_ps_optimizer_round_trip(tmp_path):
    """Parameter-server shards: slice + FlatOptimizer state, joined whole for another number of shards."""
    from drlmpi import param_server

    rng = np.random.default_rng(0)
    w = rng.normal(size=10).astype(np.float32)
    parts, opts = {}, []
    for s, (lo, hi) in enumerate(((0, 6), (6, 10))):
        opt = FlatOptimizer("adam", hi - lo)
        for _ in range(3):
            opt(w[lo:hi], rng.normal(size=hi - lo).astype(np.float32), 0.01)
        opts.append(opt)
        rel = checkpoint.part_file(1, f"ps-{s}")
        sha = checkpoint.save_part(tmp_path / rel, "ps", {"updates": 3}, {"w": w[lo:hi], **opt.state()})
        parts[f"ps-{s}"] = {"file": rel, "sha256": sha}
    st = checkpoint.load(checkpoint.save(tmp_path / checkpoint.name_of(1, 1), state(id=1, parts=parts)))
    start = param_server.restore(st, 10)
    np.testing.assert_array_equal(start["w"], w)
    np.testing.assert_array_equal(start["opt"]["m"], np.concatenate([o.arrays["m"] for o in opts]))
    assert start["opt"]["t"] == 3 and start["version"] == 3
    with pytest.raises(CheckpointError, match="hold 10 parameters, this run's network 11"):
        param_server.restore(st, 11)


@pytest.mark.parametrize("old,new", [(2, 3), (3, 2), (2, 2), (1, 1)])
def test_replay_reshard_loses_and_duplicates_nothing(old, new, tmp_path):
    fields = transition_fields(spaces("CartPole-v1")[0])
    rng = np.random.default_rng(0)
    parts, rows_in = {}, []
    for s in range(old):
        shard = PrioritizedReplay(50, fields, 0.6, rng)
        for _ in range(3 + s):  # 30-50 rows: shard 1 wraps around its ring
            n = 10 + s * 5
            batch = {k: rng.normal(size=(n, *shape)).astype(dt) for k, (shape, dt) in fields.items()}
            shard.add(batch, rng.random(n) + 0.1)
        order = shard.age_order()
        rows_in += [(shard.data["obs"][i].tobytes(), round(float(shard.raw_priorities(np.array([i]))[0]), 9))
                    for i in order]
        rel = checkpoint.part_file(1, f"replay-{s}")
        parts[f"replay-{s}"] = {"file": rel, "sha256": save_part(tmp_path / rel, shard, s, old)}
    st = checkpoint.load(checkpoint.save(tmp_path / checkpoint.name_of(1, 1), state(id=1, parts=parts)))
    rows_out = []
    for s in range(new):
        shard = PrioritizedReplay(200, fields, 0.6, rng)
        restore_shard(shard, st, s, new)
        order = shard.age_order()
        rows_out += [(shard.data["obs"][i].tobytes(), round(float(shard.raw_priorities(np.array([i]))[0]), 9))
                     for i in order]
    assert sorted(rows_out) == sorted(rows_in) and len(set(rows_in)) == len(rows_in)


def test_h5dump_reads_main_file_and_follows_part_links(tmp_path):
    """The format promise: HDF5 that h5dump reads (hdf5-tools is installed from Debian if missing, as root)."""
    import os
    import shutil
    import subprocess

    if not shutil.which("h5dump"):
        if os.geteuid() != 0:
            pytest.skip("h5dump missing and not root to install hdf5-tools")
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "hdf5-tools"], check=True,
                       capture_output=True, timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    d = tmp_path / "checkpoints"
    fields = transition_fields(spaces("CartPole-v1")[0])
    shard = PrioritizedReplay(8, fields, 0.6, np.random.default_rng(0))
    shard.add({k: np.ones((3, *shape), dt) for k, (shape, dt) in fields.items()}, np.array([1.0, 2.0, 3.0]))
    rel = checkpoint.part_file(1, "replay-0")
    path = checkpoint.save(d / checkpoint.name_of(3, 1), state(id=1, parts={
        "replay-0": {"file": rel, "sha256": save_part(d / rel, shard, 0, 1)}}))
    out = subprocess.run(["h5dump", "-d", "/parts/replay-0/priority", str(path)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and "(0): 1, 2, 3" in out.stdout, out.stdout + out.stderr
    out = subprocess.run(["h5dump", "-a", "/algo", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and '"dqn"' in out.stdout, out.stdout + out.stderr
