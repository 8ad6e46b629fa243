"""HDF5 checkpoints: the file format (checksum, atomic writes, pruning, clear errors), and the round-trip
contract every algorithm meets: save, load, identical networks, optimizer state, RNG streams and counters."""

from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from drlmpi import algos, checkpoint, lifecycle
from drlmpi.checkpoint import State
from drlmpi.comm.checkpoint import rng_state
from drlmpi.envs import spaces
from drlmpi.errors import CheckpointError
from drlmpi.learner import Parts
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


def test_ids_are_unique_per_run_directory_and_newest_is_the_last_written(tmp_path):
    """A resume from an older checkpoint takes ids above every trace in the directory (main files, parts, temporary
    files), so its files never overwrite another branch's; `newest` (and --resume auto) is the largest id, not the
    largest name."""
    cdir = tmp_path / "checkpoints"
    write(tmp_path, 9000, 4)
    (cdir / "parts-000007").mkdir()
    (cdir / ".ckpt-000000012000-000009.h5.tmp-host-12").write_bytes(b"")  # a killed writer's
    assert checkpoint.ids_on_disk(cdir) == {4, 7, 9}
    cfg = SimpleNamespace(run_dir=str(tmp_path), keep_checkpoints=1, checkpoint_every=600.0)
    life = lifecycle.Lifecycle(cfg, None, None, resumed=checkpoint.load(write(tmp_path, 1000, 2)))
    assert life.next_id == 10 and life.protected == (range(3, 10),)
    branch = checkpoint.save(cdir / checkpoint.name_of(2000, 10), state(id=10, protected=[[3, 10]]))  # (as begin())
    assert checkpoint.resolve(tmp_path) == branch and lifecycle.resume_state("auto", str(tmp_path)).id == 10
    again = lifecycle.Lifecycle(cfg, None, None, resumed=checkpoint.load(branch))  # a requeue resumes the branch
    assert again.protected == (range(3, 10),), "a later resume of the branch would prune the other branch"
    write(tmp_path, 3000, 11)
    gone = checkpoint.prune(cdir, 1, again.protected, live=set())
    left = sorted(x.name for x in cdir.iterdir())
    assert left == [checkpoint.name_of(3000, 11), checkpoint.name_of(9000, 4), "parts-000007"], left
    assert {p.name for p in gone} == {checkpoint.name_of(1000, 2), checkpoint.name_of(2000, 10),
                                      ".ckpt-000000012000-000009.h5.tmp-host-12"}


def test_prune_keeps_what_is_being_written(tmp_path):
    cdir = tmp_path / "checkpoints"
    for i in (1, 2, 3):
        write(tmp_path, 100 * i, i)
    (cdir / "parts-000003").mkdir()
    (cdir / "parts-000003" / ".replay-0.h5.tmp-h-1").write_bytes(b"")  # checkpoint 3's part, still being written
    (cdir / "parts-000001").mkdir()
    (cdir / "parts-000001" / ".replay-0.h5.tmp-h-1").write_bytes(b"")  # a dead writer's
    checkpoint.prune(cdir, 2, live={3})
    assert (cdir / "parts-000003" / ".replay-0.h5.tmp-h-1").exists() and not (cdir / "parts-000001").exists()
    with pytest.raises(Exception, match="keeps at least one"):
        checkpoint.prune(cdir, 0)


def test_a_full_disk_is_one_line_naming_the_file_and_the_previous_checkpoint_is_intact(tmp_path):
    """Writes past RLIMIT_FSIZE fail as on a full disk (Python ignores SIGXFSZ): a UserError naming the file, no
    temporary file left, the previous checkpoint loadable."""
    import subprocess
    import sys

    child = f"""
import resource, numpy as np
from pathlib import Path
from drlmpi import checkpoint
from drlmpi.checkpoint import State
d = Path({str(tmp_path)!r}) / "checkpoints"
small = State(algo="dqn", env="CartPole-v1", config={{}}, nets={{"online": {{"w": np.ones(10, np.float32)}}}}, id=1)
checkpoint.save(d / checkpoint.name_of(100, 1), small)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
big = State(algo="dqn", env="CartPole-v1", config={{}}, nets={{"online": {{"w": np.ones(10**6, np.float32)}}}}, id=2)
try:
    checkpoint.save(d / checkpoint.name_of(200, 2), big)
except checkpoint.UserError as e:
    print(e)
"""
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r
    assert r.stdout.startswith(f"cannot write {tmp_path / 'checkpoints' / checkpoint.name_of(200, 2)}: "), r.stdout
    assert len(r.stdout.strip().splitlines()) == 1 and "File too large" in r.stdout
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [checkpoint.name_of(100, 1)]
    assert checkpoint.load(tmp_path).id == 1


def test_files_are_owner_only_and_default_run_dirs_never_collide(tmp_path, monkeypatch):
    from drlmpi import rundir

    p = write(tmp_path)
    assert p.stat().st_mode & 0o077 == 0 and p.parent.stat().st_mode & 0o077 == 0
    monkeypatch.chdir(tmp_path)
    names = {rundir.default_run_dir("dqn", "ALE/Pong-v5") for _ in range(3)}  # within one second
    assert len(names) == 3 and all(Path(n).is_dir() for n in names)


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


# every registered algorithm; a new one is added here (checked below)
ROUND_TRIP = ["dqn", "apex", "gorila", "a2c", "a3c", "impala", "ga3c", "seed", "r2d2", "r2d3", "qtopt", "es", "ppo",
              "appo"]
ENV = {"qtopt": "Pendulum-v1", "ppo": "Pendulum-v1"}  # continuous actions; the others run on CartPole-v1
SETS = {"ppo": {"normalize_obs": True, "normalize_reward": True}}  # (its running statistics are state too)


def declared(module, cfg, seed: int) -> Parts:
    """The algorithm's real declared learner state (module.learner_parts, what its learner role builds and nothing
    else), every tensor in it moved off its initial value: each network's parameters and buffers, each optimizer's
    moments after a step on random gradients (or its state perturbed directly, A3C's shared RMSProp)."""
    torch.manual_seed(seed)
    net = module.build_net(cfg, *spaces(cfg.env))
    if module is algos.get("a3c"):  # one host: the statistic g lives in a window; here, in memory
        n = sum(p.numel() for p in net.parameters())
        parts = module.learner_parts(cfg, net, None, SimpleNamespace(weights=np.zeros(n, np.float32)))
    else:
        parts = module.learner_parts(cfg, net)
    for opt in parts.optims.values():
        params = [p for g in getattr(opt, "param_groups", ()) for p in g["params"]]
        for _ in range(2 if params else 0):  # (a torch optimizer's state exists after its first step)
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
        for st in opt.state_dict()["state"].values():
            for v in st.values():
                if torch.is_tensor(v) and v.is_floating_point():
                    v.add_(torch.rand_like(v))  # (torch's state_dict holds the state tensors themselves)
    with torch.no_grad():
        for m in parts.nets.values():
            for t in [*m.parameters(), *m.buffers()]:
                if t.is_floating_point():
                    t.add_(torch.randn_like(t))
    return parts


def assert_same(parts: Parts, other: Parts) -> None:
    """Every tensor of every declared network and optimizer equal, and the optimizers' hyperparameters."""
    assert parts.nets.keys() == other.nets.keys() and parts.optims.keys() == other.optims.keys()
    for name, m in parts.nets.items():
        mine, theirs = m.state_dict(), other.nets[name].state_dict()
        assert mine.keys() == theirs.keys()
        for k, v in mine.items():
            assert torch.equal(v, theirs[k]), f"network {name}: {k} not restored"
    for name, opt in parts.optims.items():
        mine, theirs = opt.state_dict(), other.optims[name].state_dict()
        strip = [{k: v for k, v in g.items() if k != "params"} for g in mine["param_groups"]]
        assert strip == [{k: v for k, v in g.items() if k != "params"} for g in theirs["param_groups"]], name
        assert mine["state"].keys() == theirs["state"].keys(), f"optimizer {name}: state not restored"
        for i, st in mine["state"].items():
            for k, v in st.items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(theirs["state"][i][k])), (name, i, k)


def test_round_trip_covers_every_algorithm():
    assert sorted(algos.ALGOS) == sorted(ROUND_TRIP + ["pbt"])  # pbt: tests/unit/test_pbt_ops.py


@pytest.mark.parametrize("algo", ROUND_TRIP)
def test_round_trip(algo, tmp_path):
    """The learner's declared state, saved as its learner saves it (Parts.snapshot), loaded and restored as its
    learner restores it (Parts.load) into another instance: every network, optimizer, RNG stream and counter
    identical, and the checkpoint holds exactly the declared parts."""
    module = algos.get(algo)
    cfg = module.Config(env=ENV.get(algo, "CartPole-v1"), run_dir=str(tmp_path), **SETS.get(algo, {}))
    parts = declared(module, cfg, 3)
    gen = np.random.default_rng(11)
    gen.random(7)
    torch.rand(3)
    s = parts.snapshot(algo, cfg, _Log(), {"env_steps": 1234, "updates": 56}, gen, "learner-0", {"roles": ["learner"]})
    path = checkpoint.save(tmp_path / checkpoint.name_of(1234, 1), s)
    expected_np, expected_torch = gen.random(5), torch.rand(4)  # the streams' continuations

    loaded = checkpoint.load(path)
    assert set(loaded.nets) == set(parts.nets) and set(loaded.optim) == set(parts.optims)
    other = declared(module, cfg, 4)  # other values, same shapes
    with pytest.raises(AssertionError):
        assert_same(parts, other)  # (so the comparison below can fail)
    assert other.load(loaded) == 56
    assert_same(parts, other)
    gen2 = np.random.default_rng(99)
    assert lifecycle.restore_rng(loaded, "learner-0", gen2)
    np.testing.assert_array_equal(gen2.random(5), expected_np)
    torch.testing.assert_close(torch.rand(4), expected_torch, rtol=0, atol=0)
    assert loaded.env_steps == 1234 and loaded.counters["wall_time"] == 12.5
    from drlmpi import config

    assert config.from_dict(module.Config, loaded.config) == cfg


def declared_names() -> list[tuple[str, str, str]]:
    """(algo, "nets" or "optim", name) of every part every algorithm declares."""
    out = []
    for algo in ROUND_TRIP:
        module = algos.get(algo)
        parts = declared(module, module.Config(env=ENV.get(algo, "CartPole-v1"), **SETS.get(algo, {})), 0)
        out += [(algo, "nets", n) for n in parts.nets] + [(algo, "optim", n) for n in parts.optims]
    return out


@pytest.mark.parametrize("algo,kind,name", declared_names())
def test_restore_refuses_a_checkpoint_missing_a_declared_part(algo, kind, name, tmp_path):
    module = algos.get(algo)
    cfg = module.Config(env=ENV.get(algo, "CartPole-v1"), run_dir=str(tmp_path), **SETS.get(algo, {}))
    parts = declared(module, cfg, 3)
    s = parts.snapshot(algo, cfg, _Log(), {"env_steps": 1, "updates": 1}, np.random.default_rng(0), "learner-0", {})
    del getattr(s, kind)[name]
    loaded = checkpoint.load(checkpoint.save(tmp_path / checkpoint.name_of(1, 1), s))
    with pytest.raises(CheckpointError):
        declared(module, cfg, 4).load(loaded)


def state_built_outside_learner_parts(source: str, name: str) -> list[str]:
    """Calls that build a network copy or an optimizer anywhere but in a `learner_parts` function (or an allowed
    place), and imports of optimizer classes (which would hide such calls)."""
    import ast

    tree, inside = ast.parse(source), set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and (fn.name == "learner_parts" or (name, fn.name) in ALLOWED):
            inside |= {id(n) for n in ast.walk(fn)}
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("torch.optim"):
            out.append(f"{name}:{n.lineno}: {ast.unparse(n)}")
        if isinstance(n, ast.Call) and id(n) not in inside:
            src = ast.unparse(n.func)
            if src in BUILDS or src.startswith(("torch.optim.", "optim.")):
                out.append(f"{name}:{n.lineno}: {src}")
    return out


def test_learner_state_is_built_only_in_learner_parts():
    """Every network copy and optimizer a learner keeps is declared: outside the `learner_parts` functions no
    algorithm makes one (so nothing a checkpoint must hold can live in a closure or a loop's local)."""
    files = [*(SRC / "algos").glob("*.py"), SRC / "value_based.py", SRC / "value_config.py", SRC / "actor_critic.py",
             SRC / "acting.py", SRC / "learner.py"]
    offenders = [x for f in files for x in state_built_outside_learner_parts(f.read_text(), f.name)]
    assert not offenders, offenders


def test_the_learner_state_check_would_catch_one():
    for code in ("def run_learner(net):\n    target = copy.deepcopy(net)",
                 "def run(net):\n    opt = torch.optim.Adam(net.parameters())",
                 "def run(net):\n    opt = Adam(net.parameters())",
                 "def run(net):\n    opt = RMSprop(net.parameters())",
                 "from torch.optim import Adam", "OPT = torch.optim.SGD([], lr=1)",
                 "class X:\n    t = copy.deepcopy(NET)"):
        assert state_built_outside_learner_parts(code, "x.py"), code
    assert not state_built_outside_learner_parts("def learner_parts(cfg, net):\n    t = copy.deepcopy(net)", "x.py")


SRC = Path(algos.__file__).resolve().parents[1]
BUILDS = {"copy.deepcopy", "deepcopy", "SharedRMSProp", "FlatOptimizer", "Adam", "RMSprop"}  # (nets.optim's too)
ALLOWED = {("qtopt.py", "run_bellman")}  # the bellman rank's read-only copies, refreshed from the weights window


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
