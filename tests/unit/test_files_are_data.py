"""Files are data: a checkpoint re-signed after crafting (its SHA-256 header is not a key, so anyone can write a
"valid" one) is still refused, in one line and within seconds, when it holds what drlmpi never writes: links out of
the file, external or virtual storage, datasets larger than what they store, part paths outside the run directory
or to a FIFO, deeply nested JSON or groups. And nothing a file names is imported: algorithms come from the registry,
a `module:Env` id only when the user names it again or passes --trust."""

import json
import os

import h5py
import numpy as np
import pytest
from helpers import DRLMPI, run

from drlmpi import checkpoint, cli
from drlmpi.checkpoint import State
from drlmpi.errors import CheckpointError


def resign(path) -> None:
    """Write a file's user block anew for its current bytes: what a crafted file's author can always do."""
    digest, size = checkpoint._sha256(path, checkpoint.USERBLOCK)
    with open(path, "rb+") as f:
        f.write((checkpoint.MAGIC + f"{digest} {size}\n".encode()).ljust(checkpoint.USERBLOCK, b"\0"))


def base(tmp_path, **kw) -> "checkpoint.Path":
    state = State(algo="dqn", env="CartPole-v1", config={"lr": 0.1}, counters={"env_steps": 10},
                  nets={"online": {"w": np.ones(4, np.float32)}}, id=1, **kw)
    return checkpoint.save(tmp_path / "run" / "checkpoints" / checkpoint.name_of(10, 1), state)


def crafted(tmp_path, edit) -> "checkpoint.Path":
    path = base(tmp_path)
    with h5py.File(path, "r+") as f:
        edit(f)
    resign(path)
    return path


def refused(path, capsys, fragment: str) -> None:
    """`drlmpi inspect` and `eval` refuse it: one line, exit 2 (in this process: no traceback either)."""
    for command in ("inspect", "eval"):
        code = cli.main([command, str(path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and fragment in err[0], (command, err)


def outside(tmp_path):
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["w"] = np.full(4, 7.0, np.float32)
    return secret


def test_an_external_link_is_refused(tmp_path, capsys):
    secret = outside(tmp_path)
    refused(crafted(tmp_path, lambda f: f["nets/online"].__setitem__("x", h5py.ExternalLink(str(secret), "/w"))),
            capsys, "an external link at /nets/online/x")


def test_external_storage_is_refused(tmp_path, capsys):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.arange(4, dtype=np.float32).tobytes())

    def edit(f):
        del f["nets/online/w"]
        f["nets/online"].create_dataset("w", (4,), np.float32, external=[(str(raw), 0, 16)])

    refused(crafted(tmp_path, edit), capsys, "dataset /nets/online/w is external, virtual or not plain numbers")


def test_a_virtual_dataset_is_refused(tmp_path, capsys):
    secret = outside(tmp_path)

    def edit(f):
        layout = h5py.VirtualLayout((4,), np.float32)
        layout[:] = h5py.VirtualSource(str(secret), "w", (4,))
        del f["nets/online/w"]
        f["nets/online"].create_virtual_dataset("w", layout)

    refused(crafted(tmp_path, edit), capsys, "is external, virtual or not plain numbers")


def test_a_dataset_declaring_more_than_it_stores_is_refused(tmp_path, capsys):
    def edit(f):
        f["nets/online"].create_dataset("huge", (10**15,), np.float32)  # never written: nothing stored

    refused(crafted(tmp_path, edit), capsys, "declares 4,000,000,000,000,000 bytes but stores 0")


def test_deep_json_and_deep_groups_are_refused(tmp_path, capsys):
    refused(crafted(tmp_path, lambda f: f.attrs.__setitem__("config", "[" * 100_000 + "]" * 100_000)), capsys,
            "config is not JSON")
    (tmp_path / "run").rename(tmp_path / "run1")
    refused(crafted(tmp_path, lambda f: f.attrs.__setitem__("layout", "[" * 40 + "]" * 40)), capsys,
            "layout nested deeper than 32")
    (tmp_path / "run").rename(tmp_path / "run2")
    refused(crafted(tmp_path, lambda f: f["nets"].create_group("a/b/c/d/e/f/g/h/i/j")), capsys,
            "groups nested deeper than 8")


@pytest.mark.parametrize("where", ["absolute", "up", "fifo", "symlink"])
def test_part_paths_outside_the_run_directory_or_not_regular_are_refused(where, tmp_path, capsys):
    secret = outside(tmp_path)
    cdir = tmp_path / "run" / "checkpoints"
    rel = {"absolute": str(secret), "up": "../../secret.h5", "fifo": "parts-000001/replay-0.h5",
           "symlink": "parts-000001/replay-0.h5"}[where]
    manifest = {"replay-0": {"file": rel, "sha256": "0" * 64}}
    path = crafted(tmp_path, lambda f: f["parts"].attrs.__setitem__("manifest", json.dumps(manifest)))
    (cdir / "parts-000001").mkdir()
    if where == "fifo":
        os.mkfifo(cdir / rel)
    if where == "symlink":
        os.symlink(secret, cdir / rel)
    fragment = {"absolute": "not a relative .h5 file", "up": "outside the run directory", "fifo": "not a regular file",
                "symlink": "outside the run directory"}[where]  # (a symlink is followed to where it points)
    r = run([DRLMPI, "inspect", str(path)], timeout=30)  # a FIFO opened for reading would block forever
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("drlmpi: error: "), lines
    assert fragment in lines[0], lines


def test_a_parts_group_that_is_a_link_is_refused_before_it_is_followed(tmp_path, capsys):
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)  # following the link would block on it forever

    def edit(f):
        del f["parts"]
        f["parts"] = h5py.ExternalLink(str(fifo), "/")

    refused(crafted(tmp_path, edit), capsys, "/parts is not a group of this file")


def test_a_relative_run_directory_reads_its_parts(tmp_path, monkeypatch):
    """Part paths are checked against the run directory's real path: `drlmpi eval .` from inside a run works."""
    cdir = tmp_path / "run" / "checkpoints"
    sha = checkpoint.save_part(cdir / "parts-000001" / "replay-0.h5", "replay", {}, {"obs": np.zeros(3)})
    base(tmp_path, parts={"replay-0": {"file": "parts-000001/replay-0.h5", "sha256": sha}})
    monkeypatch.chdir(tmp_path / "run")
    assert checkpoint.load(".").parts["replay-0"]["sha256"] == sha
    monkeypatch.chdir(cdir)
    assert checkpoint.load(checkpoint.name_of(10, 1)).id == 1


def test_a_plain_checkpoint_passes_every_check(tmp_path):
    """The checks refuse nothing drlmpi writes: parts linked from the main file, gzip-compressed demonstrations."""
    cdir = tmp_path / "run" / "checkpoints"
    sha = checkpoint.save_part(cdir / "parts-000001" / "replay-0.h5", "replay", {"size": 0},
                               {"obs": np.zeros((1000, 4), np.float32)})
    path = base(tmp_path, parts={"replay-0": {"file": "parts-000001/replay-0.h5", "sha256": sha}})
    assert checkpoint.load(path).parts["replay-0"]["sha256"] == sha
    assert checkpoint.load_part(checkpoint.load(path), "replay-0", "replay")[1]["obs"].shape == (1000, 4)

    def fill(f):
        f.create_dataset("frames", data=np.zeros((64, 84, 84), np.uint8), compression="gzip")

    checkpoint.write_file(tmp_path / "demo.h5", fill)
    with checkpoint.open_verified(tmp_path / "demo.h5") as f:
        assert f["frames"].shape == (64, 84, 84)
    with pytest.raises(CheckpointError, match="not a regular file"):
        checkpoint.verify(tmp_path)


def test_eval_imports_no_module_a_checkpoint_names(tmp_path):
    """A checkpoint whose algo is a module path, or whose env is `module:Env`, runs no code of that module: the
    module would write a marker file when imported."""
    pkg = tmp_path / "mods"
    pkg.mkdir()
    marker = tmp_path / "imported"
    (pkg / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    env = {"PYTHONPATH": str(pkg)}
    algo_path = crafted(tmp_path, lambda f: f.attrs.__setitem__("algo", "evil.x"))
    for command in (["eval", str(algo_path)], ["record", "--env", "CartPole-v1", "--checkpoint", str(algo_path),
                                               "--out", str(tmp_path / "d.h5")]):
        r = run([DRLMPI, *command], timeout=60, env=env, cwd=tmp_path)
        assert r.returncode == 2 and "unknown algorithm 'evil.x'" in r.stderr and not marker.exists(), r.stderr
    (tmp_path / "run").rename(tmp_path / "run1")
    env_path = crafted(tmp_path, lambda f: f.attrs.__setitem__("config", json.dumps({"env": "evil:Env-v0"})))
    r = run([DRLMPI, "eval", str(env_path)], timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 2 and "names the module 'evil'" in r.stderr and not marker.exists(), r.stderr
    r = run([DRLMPI, "eval", str(env_path), "--trust"], timeout=60, env=env, cwd=tmp_path)
    assert marker.exists(), r.stderr  # trusted: imported (and then it fails: evil registers no env)


def test_a_resumed_population_imports_its_member_module_only_when_named_again():
    from drlmpi import algos, config, lifecycle
    from drlmpi.algos import pbt

    state = State(algo="pbt", env="CartPole-v1", path="c.h5",
                  config=config.to_dict(config.build(pbt.Config, None, ["member=mylab.algo"])))
    with pytest.raises(CheckpointError, match="its member 'mylab.algo' names a module: pass --set member=mylab.algo"):
        lifecycle.resumed_config(pbt, "pbt", state, None, [])
    lifecycle.check_named_modules(pbt, state, ["member=mylab.algo"], trust=False)
    lifecycle.check_named_modules(pbt, state, [], trust=True)
    assert config.module_keys(pbt.Config) == ("member",) and all(
        not config.module_keys(algos.get(a).Config) for a in algos.ALGOS if a != "pbt")
