"""HDF5 checkpoints: the whole state of a run, checksummed, written atomically; no pickle anywhere.

A checkpoint is a main file `checkpoints/ckpt-<env steps>-<id>.h5` and, beside it, a directory
`parts-<id>/` of part files that other ranks wrote in parallel (replay shards, parameter-server shards).
The format is documented in docs/checkpoint-format.md; in short:

  main file   attrs: format, version, drlmpi_version, algo, env, config (JSON), layout (JSON), id, complete
              /counters (attrs)  /nets/<net>/<param>  /optim/<name>/...  /rng/<role>-<index>
              /metrics/<column> [rows]  /returns [k]  /parts (attr manifest JSON: name -> file, sha256;
              and one HDF5 external link per part, for h5dump and h5py users)
  part file   attrs: format, version, kind ("replay", "ps"), part name; datasets of its own

Every file carries a 512-byte HDF5 user block (h5py and h5dump skip it) holding
`drlmpi-checkpoint sha256 <hex> <size>`: the SHA-256 and length of the bytes after it, written once
the HDF5 file is closed. A reader verifies them before HDF5 sees a byte, so any flipped, zeroed or
missing byte is refused with a one-line `CheckpointError`, never half-loaded.

Writes are atomic: a temporary name in the same directory, fsynced, renamed, the directory fsynced; parts
first, the main file last. A crash at any point leaves the previous checkpoint loadable.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drlmpi import __version__
from drlmpi.errors import CheckpointError, UserError, invariant

FORMAT = "drlmpi-checkpoint"
VERSION = 2
SUFFIX = ".h5"
USERBLOCK = 512
MAGIC = b"drlmpi-checkpoint sha256 "
NAME = re.compile(r"^ckpt-(\d{12})-(\d{6,})\.h5$")  # ckpt-<env steps>-<id>.h5
PARTS = re.compile(r"^parts-(\d{6,})$")
TEMP = re.compile(r"^\.(.+)\.tmp-[\w.-]+$")  # .<name>.tmp-<host>-<pid>: a file being written (or a dead writer's)


@dataclass
class State:
    """Everything a run needs to continue. Arrays are numpy; nothing refers to torch."""

    algo: str
    env: str
    config: dict
    counters: dict[str, float] = field(default_factory=dict)  # env_steps, updates, wall_time, ...
    nets: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # net -> param -> array
    optim: dict[str, dict] = field(default_factory=dict)  # name -> {"groups": JSON list, "state": {k: {key: arr}}}
    rng: dict[str, dict] = field(default_factory=dict)  # "<role>-<index>" -> {"numpy": dict, "torch": uint8 [n]}
    # (n is 0 on a rank that never imports torch)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # column -> float64 [rows]
    returns: list[float] = field(default_factory=list)  # the recent-return window
    layout: dict = field(default_factory=dict)  # {"roles": [...], "hosts": [...]}
    parts: dict[str, dict] = field(default_factory=dict)  # part name -> {"file": relative path, "sha256": hex}
    id: int = 0
    path: Path | None = None
    protected: list = field(default_factory=list)  # [[lo, hi), ...]: ids of other branches its run never prunes

    @property
    def weights(self) -> dict[str, dict[str, np.ndarray]]:
        """The networks a policy needs (what `drlmpi eval` loads)."""
        return self.nets

    @property
    def env_steps(self) -> int:
        return int(self.counters.get("env_steps", 0))

    def part_path(self, name: str) -> Path:
        return self.path.parent / self.parts[name]["file"]


# ---- files: user block checksum, atomic write -----------------------------------------------------------


def _sha256(path: Path, offset: int) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(1 << 22):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Create a directory and its missing parents owner-only (0700, less what the umask removes)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_file(path: str | Path, fill) -> str:
    """Write an HDF5 file atomically: fill(h5py.File) under a temporary name, checksum into the user block,
    fsync, rename, fsync the directory. Returns the SHA-256 (hex) of the bytes after the user block."""
    import h5py

    path = Path(path)
    make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # exclusively ours, owner-only
        with h5py.File(tmp, "w", userblock_size=USERBLOCK) as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            fill(f)
        digest, size = _sha256(tmp, USERBLOCK)
        header = MAGIC + f"{digest} {size}\n".encode()
        with open(tmp, "rb+") as fh:
            fh.write(header.ljust(USERBLOCK, b"\0"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except (OSError, RuntimeError) as e:  # a full disk, a quota, a read-only file system: earlier files are intact
        if isinstance(e, RuntimeError) and "errno" not in str(e):  # (HDF5 reports a failed write so)
            raise
        raise UserError(f"cannot write {path}: {getattr(e, 'strerror', None) or e} (no file was replaced)") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return digest


def verify(path: str | Path, sha256: str | None = None, follow: bool = True) -> Path:
    """Check a file's user-block checksum (and that it is `sha256`, if given); raise CheckpointError. The file must
    be a regular file (a FIFO would block the reader), not a symbolic link unless `follow` (a path the user gave)."""
    path = Path(path)
    try:
        st = os.stat(path) if follow else os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"{path}: not a regular file")
        with open(path, "rb") as f:
            head = f.read(USERBLOCK)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    if not head.startswith(MAGIC):
        if head.startswith(b"\x89HDF"):
            raise CheckpointError(f"{path}: not a drlmpi checkpoint (an HDF5 file without its checksum)")
        raise CheckpointError(f"{path}: not a drlmpi checkpoint")
    try:
        line, rest = head[len(MAGIC):].split(b"\n", 1)
        digest, size = line.decode().split(" ")
        size = int(size)
        if rest.strip(b"\0") or len(head) != USERBLOCK:
            raise ValueError
    except ValueError:
        raise CheckpointError(f"{path}: damaged checkpoint (unreadable checksum header)") from None
    actual, n = _sha256(path, USERBLOCK)
    if n != size:
        raise CheckpointError(f"{path}: damaged checkpoint: truncated or extended ({n + USERBLOCK} bytes, "
                              f"{size + USERBLOCK} written)")
    if actual != digest:
        raise CheckpointError(f"{path}: damaged checkpoint (checksum mismatch)")
    if sha256 is not None and digest != sha256:
        raise CheckpointError(f"{path}: part file from another checkpoint (checksum differs from the manifest)")
    return path


def digest(path: str | Path) -> str:
    """A verified file's SHA-256 (hex), as a manifest names it."""
    with open(verify(path), "rb") as f:
        return f.read(USERBLOCK)[len(MAGIC):].split(b" ", 1)[0].decode()


def open_verified(path: str | Path, sha256: str | None = None, follow: bool = True):
    """h5py.File (read-only) of a verified drlmpi file whose contents are plain data (check_contents)."""
    import h5py

    path = verify(path, sha256, follow)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: damaged checkpoint ({e})") from None
    try:
        if f.attrs.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a drlmpi checkpoint")
        version = f.attrs.get("version", -1)
        if version != VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {version}; this drlmpi reads version {VERSION}")
        check_contents(f, path)
    except CheckpointError:
        f.close()
        raise
    except (KeyError, OSError, ValueError, TypeError, AttributeError, RuntimeError) as e:  # what h5py raises on
        f.close()  # types and shapes it cannot map (an empty dataset, an HDF5 type numpy lacks, ...)
        raise CheckpointError(f"{path}: damaged checkpoint ({type(e).__name__}: {e})") from None
    return f


# ---- files are data: what a reader refuses before reading an array ---------------------------------------------

MAX_DEPTH = 8  # groups in a drlmpi file nest at most 4 deep (/optim/<name>/state/<index>)
MAX_JSON_DEPTH = 32  # JSON attributes nest at most 4 deep (a numpy bit generator's state)
INFLATE = 1100  # the most bytes a deflated byte inflates to (deflate's limit is about 1032:1)
FILTERS = (1, 2, 3)  # HDF5's deflate (gzip), shuffle and fletcher32: the only filters drlmpi writes


def check_contents(f, path: Path) -> None:
    """CheckpointError for anything a drlmpi file never holds, before any array is read: a link out of the file
    (but the main file's /parts links to its manifest's own parts), a soft link, a named type, external or virtual
    storage, a filter but deflate and shuffle, a dataset larger than its stored bytes can hold, objects, groups
    nested deeper than MAX_DEPTH."""
    import h5py

    allowed = {f"/parts/{n}": (p.get("file"), "/") for n, p in manifest_of(f, path).items() if isinstance(p, dict)}
    stack = [(f, 0)]
    while stack:
        group, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{path}: groups nested deeper than {MAX_DEPTH}")
        for name in group:
            full, link = f"{group.name.rstrip('/')}/{name}", group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                if allowed.get(full) != (link.filename, link.path):
                    raise CheckpointError(f"{path}: an external link at {full} (to {link.filename}): refused")
                continue
            if not isinstance(link, h5py.HardLink):
                raise CheckpointError(f"{path}: a {type(link).__name__} at {full}: refused")
            obj = group[name]
            if isinstance(obj, h5py.Group):
                stack.append((obj, depth + 1))
            elif isinstance(obj, h5py.Dataset):
                check_dataset(obj, path)
            else:
                raise CheckpointError(f"{path}: a {type(obj).__name__} at {full}: refused")


def check_dataset(ds, path: Path) -> None:
    """CheckpointError unless ds is plain numbers stored in this file, no larger than its stored bytes allow."""
    plist = ds.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if ds.external or ds.is_virtual or ds.dtype.kind in "OV" or ds.dtype.hasobject:
        raise CheckpointError(f"{path}: dataset {ds.name} is external, virtual or not plain numbers: refused")
    if any(c not in FILTERS for c in filters):
        raise CheckpointError(f"{path}: dataset {ds.name} uses a filter drlmpi does not write: refused")
    if ds.shape is None:  # (an empty dataspace: h5py.Empty)
        raise CheckpointError(f"{path}: dataset {ds.name} has no shape: refused")
    stored, nbytes = ds.id.get_storage_size(), ds.size * ds.dtype.itemsize
    if nbytes > (INFLATE * stored if filters else stored):
        raise CheckpointError(f"{path}: dataset {ds.name} declares {nbytes:,} bytes but stores {stored:,}: refused")


def manifest_of(f, path: Path) -> dict:
    """The /parts manifest of a main file ({} in a part or demonstrations file); /parts must be a group of this file
    (reading a link would open the file it names)."""
    import h5py

    link = f.get("parts", getlink=True)
    if link is None:
        return {}
    if not isinstance(link, h5py.HardLink) or not isinstance(f["parts"], h5py.Group):
        raise CheckpointError(f"{path}: /parts is not a group of this file: refused")
    if "manifest" not in f["parts"].attrs:
        return {}
    manifest = loads(f["parts"].attrs["manifest"], path, "the parts manifest")
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: damaged checkpoint (the parts manifest is not an object)")
    return manifest


def loads(text, path: Path, what: str):
    """A JSON attribute, nested at most MAX_JSON_DEPTH deep; CheckpointError otherwise."""
    try:
        obj = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        raise CheckpointError(f"{path}: damaged checkpoint ({what} is not JSON)") from None
    stack = [(obj, 0)]
    while stack:
        x, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise CheckpointError(f"{path}: {what} nested deeper than {MAX_JSON_DEPTH}: refused")
        if isinstance(x, dict | list):
            stack += [(v, depth + 1) for v in (x.values() if isinstance(x, dict) else x)]
    return obj


def ranges_ok(x) -> bool:
    """x is a list of [lo, hi) pairs of ints (a checkpoint's protected ids)."""
    return isinstance(x, list) and all(isinstance(r, list) and len(r) == 2 and all(type(i) is int for i in r)
                                       for r in x)


def check_part_file(main: Path, rel) -> None:
    """CheckpointError unless a manifest's part path is relative, a .h5 file, and inside the run directory (the
    main file's directory's parent: parts-<id>/ beside it, a PBT member's checkpoints in member-<m>/)."""
    if not isinstance(rel, str) or not rel.endswith(SUFFIX) or os.path.isabs(rel):
        raise CheckpointError(f"{main}: a part path {rel!r} that is not a relative .h5 file: refused")
    run_dir = os.path.realpath(main.parent.parent)  # (real paths: a relative run dir, a symlinked parts directory)
    if not os.path.realpath(main.parent / rel).startswith(run_dir + os.sep):
        raise CheckpointError(f"{main}: a part path {rel!r} outside the run directory: refused")


# ---- the main file ---------------------------------------------------------------------------------------


def _json(x) -> str:
    return json.dumps(x, sort_keys=True)


def _put_tree(group, tree: dict) -> None:
    for k, v in tree.items():
        if isinstance(v, dict):
            _put_tree(group.create_group(str(k)), v)
        else:
            group.create_dataset(str(k), data=np.asarray(v))


def _get_tree(group) -> dict:
    import h5py

    return {k: _get_tree(v) if isinstance(v, h5py.Group) else v[()] for k, v in group.items()}


def name_of(env_steps: int, ckpt_id: int) -> str:
    return f"ckpt-{env_steps:012d}-{ckpt_id:06d}{SUFFIX}"


def part_file(ckpt_id: int, name: str) -> str:
    """A part file's path relative to the checkpoints directory."""
    return f"parts-{ckpt_id:06d}/{name}.h5"


def save(path: str | Path, state: State) -> Path:
    """Write the main file of a checkpoint (its parts must be in place already)."""
    import h5py

    path = Path(path)

    def fill(f):
        f.attrs.update({"drlmpi_version": __version__, "algo": state.algo, "env": state.env,
                        "config": _json(state.config), "layout": _json(state.layout), "id": state.id,
                        "protected": _json(state.protected)})
        c = f.create_group("counters")
        for k, v in state.counters.items():
            c.attrs[k] = v
        _put_tree(f.create_group("nets"), state.nets)
        og = f.create_group("optim")
        for name, o in state.optim.items():
            g = og.create_group(name)
            g.attrs["groups"] = _json(o["groups"])
            _put_tree(g.create_group("state"), o["state"])
        rg = f.create_group("rng")
        for who, r in state.rng.items():
            g = rg.create_group(who)
            g.attrs["numpy"] = _json(r["numpy"])
            g.create_dataset("torch", data=np.asarray(r["torch"], np.uint8))
        mg = f.create_group("metrics")
        mg.attrs["columns"] = _json(list(state.metrics))
        for k, v in state.metrics.items():
            mg.create_dataset(k, data=np.asarray(v, np.float64))
        f.create_dataset("returns", data=np.asarray(state.returns, np.float64))
        pg = f.create_group("parts")
        pg.attrs["manifest"] = _json(state.parts)
        for name, p in state.parts.items():
            pg[name] = h5py.ExternalLink(p["file"], "/")
        f.attrs["complete"] = True

    write_file(path, fill)
    return path


def load(path: str | Path, parts: bool = True) -> State:
    """Read and verify a checkpoint file, or a run directory's newest; with parts, verify its part files too."""
    path = resolve(path)
    f = open_verified(path)
    try:
        with f:
            if not bool(f.attrs.get("complete", False)):
                raise CheckpointError(f"{path}: incomplete checkpoint (the writer stopped mid-write)")
            optim = {name: {"groups": loads(g.attrs["groups"], path, "optimizer groups"),
                            "state": _get_tree(g["state"])} for name, g in f["optim"].items()}
            rng = {who: {"numpy": loads(g.attrs["numpy"], path, "an RNG state"), "torch": g["torch"][()]}
                   for who, g in f["rng"].items()}
            columns = loads(f["metrics"].attrs["columns"], path, "the metric columns")
            state = State(
                algo=str(f.attrs["algo"]), env=str(f.attrs["env"]), config=loads(f.attrs["config"], path, "config"),
                counters={k: v.item() if hasattr(v, "item") else v for k, v in f["counters"].attrs.items()},
                nets=_get_tree(f["nets"]), optim=optim, rng=rng,
                metrics={k: f["metrics"][k][()] for k in columns}, returns=f["returns"][()].tolist(),
                layout=loads(f.attrs["layout"], path, "layout"), parts=manifest_of(f, path),
                id=int(f.attrs["id"]), path=path,
                protected=loads(f.attrs.get("protected", "[]"), path, "protected ids"))
    except CheckpointError:
        raise
    except (KeyError, OSError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state.config, dict) or not isinstance(state.layout, dict) or not ranges_ok(state.protected):
        raise CheckpointError(f"{path}: damaged checkpoint (config, layout or protected ids of the wrong type)")
    for name, p in state.parts.items():
        if not isinstance(p, dict) or not isinstance(p.get("sha256"), str):
            raise CheckpointError(f"{path}: damaged checkpoint (manifest entry {name!r})")
        check_part_file(path, p.get("file"))
    if parts:
        for name, p in state.parts.items():
            verify(state.part_path(name), p["sha256"], follow=False)
    return state


def ids_on_disk(directory: str | Path) -> set[int]:
    """Every checkpoint id a checkpoints directory holds a trace of: main files, parts directories, temporary files.
    A writer takes the next id above all of them, so ids are unique per run directory (prune never deletes the
    largest: it is the newest written or another branch's)."""
    return {i for p in Path(directory).glob("*") if (i := id_of(p)) is not None}


def id_of(path: Path) -> int | None:
    """The checkpoint id a main file, parts directory, or temporary file of either names, else None."""
    name = path.name
    if (m := TEMP.match(name)) is not None:
        name = m[1]
    if (m := NAME.match(name)) is not None:
        return int(m[2])
    if (m := PARTS.match(name)) is not None:
        return int(m[1])
    if (m := PARTS.match(path.parent.name)) is not None and TEMP.match(path.name):  # a part's temporary file
        return int(m[1])
    return None


def newest(run_dir: str | Path) -> Path | None:
    """The checkpoint main file of a run directory written last (the largest id: ids only grow, whichever branch
    a resume started), or None. Only names are compared: `load` verifies the file."""
    found = main_files(Path(run_dir) / "checkpoints")
    return found[-1] if found else None


def main_files(directory: Path) -> list[Path]:
    """A checkpoints directory's main files, oldest written first (by id)."""
    found = [p for p in directory.glob(f"ckpt-*{SUFFIX}") if NAME.match(p.name)]
    return sorted(found, key=lambda p: int(NAME.match(p.name)[2]))


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or the newest checkpoint of a run directory."""
    path = Path(path)
    if path.is_dir():
        found = newest(path)
        if found is None:
            raise CheckpointError(f"no checkpoint in {path}/checkpoints")
        return found
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def prune(directory: Path, keep: int, protected: tuple[range, ...] = (), live: set[int] = frozenset()
          ) -> list[Path]:
    """Delete all but the `keep` main files written last of a checkpoints directory, except `protected` ids (the
    checkpoints another branch wrote: newer than the one this run resumed from); then the parts directories of no
    kept checkpoint (but not those newer than every kept one: a checkpoint being written), and the temporary files
    of dead writers (any id not in `live`, the checkpoints this run still writes, and not newer than every kept
    one). Only one job writes in a run directory (rundir.lock). Returns what went."""
    invariant(keep >= 1, "prune keeps at least one checkpoint")
    mains = [p for p in main_files(directory) if not any(int(NAME.match(p.name)[2]) in r for r in protected)]
    removed = []
    for p in mains[: max(0, len(mains) - keep)]:
        p.unlink(missing_ok=True)  # main first: a half-pruned checkpoint is never mistaken for a complete one
        removed.append(p)
    kept = {int(NAME.match(p.name)[2]) for p in mains[max(0, len(mains) - keep):]}
    newest_kept = max([*kept, *(r.stop - 1 for r in protected if r)], default=0)
    for d in directory.glob("parts-*"):
        ckpt_id = id_of(d)
        if ckpt_id is not None and ckpt_id not in kept and not any(ckpt_id in r for r in protected) and \
                ckpt_id < newest_kept:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    for t in [*directory.glob(".*.tmp-*"), *directory.glob("parts-*/.*.tmp-*")]:
        ckpt_id = id_of(t)
        if ckpt_id is not None and ckpt_id not in live and ckpt_id <= newest_kept:
            t.unlink(missing_ok=True)
            removed.append(t)
    return removed


# ---- part files: replay shards, parameter-server shards --------------------------------------------------


def save_part(path: Path, kind: str, attrs: dict, arrays: dict[str, np.ndarray]) -> str:
    """Write one part file atomically; returns its SHA-256 for the manifest."""

    invariant(not {"format", "version", "kind", "complete"} & set(attrs), "reserved attribute names")

    def fill(f):
        f.attrs["kind"] = kind
        for k, v in attrs.items():
            f.attrs[k] = v
        f.attrs["complete"] = True
        for k, v in arrays.items():
            f.create_dataset(k, data=v)

    return write_file(path, fill)


def load_part(state: State, name: str, kind: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(attrs, arrays) of a checkpoint's part, verified against its manifest entry."""
    if name not in state.parts:
        raise CheckpointError(f"{state.path}: no part '{name}'")
    path = state.part_path(name)
    f = open_verified(path, state.parts[name]["sha256"], follow=False)
    try:
        with f:
            if f.attrs.get("kind") != kind or not bool(f.attrs.get("complete", False)):
                raise CheckpointError(f"{path}: not a complete {kind} part")
            attrs = {k: v.item() if hasattr(v, "item") else v for k, v in f.attrs.items()}
            return attrs, {k: v[()] for k, v in f.items()}
    except CheckpointError:
        raise
    except (KeyError, OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: damaged part ({type(e).__name__}: {e})") from None
