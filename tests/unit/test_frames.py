"""Compact frames (replay.frames): exact distinct-frame packing, and a frame replay that samples the same batches
as full stacks, drops its oldest rows when its pool is full, and round-trips through checkpoint parts."""

import numpy as np
import pytest

from drlmpi import checkpoint
from drlmpi.envs import Step
from drlmpi.replay import NStepBuilder, PrioritizedReplay, transition_fields
from drlmpi.replay import frames as fr
from drlmpi.replay.frames import FRAMES, FrameReplay
from drlmpi.replay.plane import restore_shard, save_part
from drlmpi.replay.shard import reply_layout

C, H, W = 4, 12, 10  # stacks of 4 frames of 12 x 10 (the code never assumes 84 x 84)
STACKS = ("obs", "next_obs")


class Space:  # an image observation space as transition_fields reads it
    shape, dtype = (C, H, W), np.dtype(np.uint8)


FIELDS = transition_fields(Space())


def frame_stream(E: int, steps: int, seed: int):
    """(obs, actions, Step) of E envs whose obs are stacks of their last C frames (an episode starts with C copies
    of its first frame, as gymnasium's frame stacking pads), episodes ending at random; each frame is new."""
    rng = np.random.default_rng(seed)
    new = lambda: rng.integers(0, 256, (H, W), dtype=np.uint8)  # noqa: E731
    stacks = np.stack([np.stack([f] * C) for f in (new() for _ in range(E))])
    for _ in range(steps):
        after = np.stack([np.concatenate([s[1:], new()[None]]) for s in stacks])
        term = rng.random(E) < 0.01
        trunc = ~term & (rng.random(E) < 0.005)
        nxt = after.copy()
        for e in np.flatnonzero(term | trunc):
            nxt[e] = np.stack([new()] * C)
        yield stacks, rng.integers(0, 6, E), Step(nxt, rng.normal(size=E).astype(np.float32), term, trunc, after)
        stacks = nxt


def blocks(E=3, steps=400, rows=64, seed=0, batch=64):
    """Blocks of `rows` env-major n-step transitions, each with a unique `ret` (the row's id)."""
    builder, pending = NStepBuilder(E, 3, 0.99, batch=batch, env_major=True), []
    for obs, actions, step in frame_stream(E, steps, seed):
        out = builder.push(obs, actions, step)
        if out is not None:
            pending.append({f: out[f] for f in FIELDS})
    cat = {f: np.concatenate([p[f] for p in pending]) for f in FIELDS}
    cat["ret"] = np.arange(len(cat["ret"]), dtype=np.float32)
    for lo in range(0, len(cat["ret"]) - rows + 1, rows):
        yield {f: v[lo : lo + rows] for f, v in cat.items()}


def compact(block: dict) -> dict:
    return fr.compact(block, STACKS)


def gathered(storage, slot: np.ndarray) -> dict:
    _, out = reply_layout(FIELDS, len(slot)).views(reply_layout(FIELDS, len(slot)).new())
    storage.fetch(slot, out, 0)
    return {k: out[k].copy() for k in FIELDS}


def test_pack_stores_each_distinct_frame_once_and_rebuilds_every_stack():
    block = next(blocks(E=1))
    c = compact(block)
    for k in STACKS:
        np.testing.assert_array_equal(c[FRAMES][c[k + "_ref"]], block[k])
    distinct = {f.tobytes() for k in STACKS for f in block[k].reshape(-1, H, W)}
    assert len(c[FRAMES]) == len(distinct) < 1.3 * 64  # one env's 64 transitions: about 64 + 6 frames


def test_pack_stays_exact_when_every_hash_collides(monkeypatch):
    monkeypatch.setattr(fr, "_multipliers", lambda n: np.zeros(n, np.uint64))  # every frame hashes to 0
    block = next(blocks(E=2))
    c = compact(block)
    for k in STACKS:
        np.testing.assert_array_equal(c[FRAMES][c[k + "_ref"]], block[k])


def test_frame_replay_samples_the_same_batches_as_full_stacks_through_wrap_around():
    full = PrioritizedReplay(500, FIELDS, 0.6, np.random.default_rng(7))
    comp = FrameReplay(500, FIELDS, STACKS, 0.6, np.random.default_rng(7), fr.pool_frames(500, 64, FIELDS, STACKS))
    rng = np.random.default_rng(1)
    for i, block in enumerate(blocks(E=3, steps=600)):  # about 1,700 rows into 500: the ring wraps 3 times
        prio = rng.random(len(block["ret"])) + 0.1
        full.add(block, prio)
        comp.add(compact(block), prio)
        if full.size >= 128:
            a, pa = full.sample_slots(32)
            b, pb = comp.sample_slots(32)
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(pa, pb)
            got, want = gathered(comp, b), {k: full.data[k][a] for k in FIELDS}
            for k in FIELDS:
                np.testing.assert_array_equal(got[k], want[k], err_msg=f"{k} after block {i}")
            td = rng.random(32)
            full.update_priorities(a, td, full.gen[a])
            comp.update_priorities(b, td, comp.gen[b])
    assert comp.dropped == 0 and comp.size == full.size == 500
    held = np.concatenate([comp.data[k + "_ref"][comp.age_order()].ravel() for k in STACKS])
    np.testing.assert_array_equal(np.bincount(held, minlength=len(comp.pool.count)), comp.pool.count)
    assert comp.pool.n_free == (comp.pool.count == 0).sum()
    assert (comp.pool.count > 0).sum() / comp.size < 1.2  # frames a row, against 8 in full stacks


def test_a_full_pool_drops_the_oldest_rows_which_are_never_sampled_again():
    comp = FrameReplay(400, FIELDS, STACKS, 0.6, np.random.default_rng(0), pool_frames=300)
    stream = list(blocks(E=3, steps=400))  # 300 frames: about 270 rows
    for block in stream[:-1]:
        comp.add(compact(block))
    before, gen = comp.age_order(), comp.gen.copy()
    comp.add(compact(stream[-1]))
    dropped = np.setdiff1d(before, comp.age_order())
    assert comp.dropped > 0 and comp.size < comp.capacity and len(dropped)
    assert comp.update_priorities(dropped, np.full(len(dropped), 5.0), gen[dropped]) == 0, \
        "a priority update for a dropped slot must be dropped"
    assert (comp.tree.get(dropped) == 0).all()
    live = comp.age_order()
    ids = comp.data["ret"][live]
    assert (np.diff(ids) == 1).all(), "the rows kept are the newest, in order"
    slot, _ = comp.sample_slots(256)
    assert np.isin(slot, live).all(), "a dropped row was sampled"
    got = gathered(comp, slot)
    by_id = {float(r): (block, j) for block in stream for j, r in enumerate(block["ret"])}
    for i, r in enumerate(got["ret"]):
        block, j = by_id[float(r)]
        for k in STACKS:
            np.testing.assert_array_equal(got[k][i], block[k][j])


@pytest.mark.parametrize("old,new", [(2, 3), (2, 1)])
def test_compact_parts_reshard_every_row_with_its_frames(old, new, tmp_path):
    rng = np.random.default_rng(0)
    parts, rows_in = {}, []
    stream = blocks(E=2, steps=500, rows=64)
    for s in range(old):
        shard = FrameReplay(300, FIELDS, STACKS, 0.6, rng, fr.pool_frames(300, 64, FIELDS, STACKS))
        for _ in range(5):  # 320 rows: the ring wraps
            shard.add(compact(next(stream)), rng.random(64) + 0.1)
        order = shard.age_order()
        full = gathered(shard, order)
        rows_in += [(full["obs"][i].tobytes() + full["next_obs"][i].tobytes(), float(full["ret"][i]))
                    for i in range(len(order))]
        rel = checkpoint.part_file(1, f"replay-{s}")
        parts[f"replay-{s}"] = {"file": rel, "sha256": save_part(tmp_path / rel, shard, s, old)}
    from test_checkpoint import state

    st = checkpoint.load(checkpoint.save(tmp_path / checkpoint.name_of(1, 1), state(id=1, parts=parts)))
    _, part = checkpoint.load_part(st, "replay-0", "replay")
    assert len(part[FRAMES]) < 1.3 * len(part["ret"]), "a part holds each frame once"
    rows_out = []
    for s in range(new):
        shard = FrameReplay(600, FIELDS, STACKS, 0.6, rng, fr.pool_frames(600, 64, FIELDS, STACKS))
        restore_shard(shard, st, s, new)
        full = gathered(shard, shard.age_order())
        rows_out += [(full["obs"][i].tobytes() + full["next_obs"][i].tobytes(), float(full["ret"][i]))
                     for i in range(shard.size)]
        assert (shard.pool.count > 0).sum() < 1.3 * shard.size, "re-sharding split the rows that share frames"
    assert sorted(rows_out) == sorted(rows_in) and len(set(rows_in)) == len(rows_in)


def test_a_full_stack_part_loads_into_compact_frames(tmp_path):
    """A checkpoint written with full stacks (before compact frames) resumes into a frame replay."""
    rng = np.random.default_rng(0)
    full = PrioritizedReplay(200, FIELDS, 0.6, rng)
    for block in blocks(E=2, steps=200, rows=32):
        full.add(block, rng.random(32) + 0.1)
    rel = checkpoint.part_file(1, "replay-0")
    from test_checkpoint import state

    st = checkpoint.load(checkpoint.save(tmp_path / checkpoint.name_of(1, 1), state(id=1, parts={
        "replay-0": {"file": rel, "sha256": save_part(tmp_path / rel, full, 0, 1)}})))
    comp = FrameReplay(200, FIELDS, STACKS, 0.6, rng, fr.pool_frames(200, 32, FIELDS, STACKS))
    assert restore_shard(comp, st, 0, 1) == full.size
    got = gathered(comp, comp.age_order())
    for k in FIELDS:
        np.testing.assert_array_equal(got[k], full.data[k][full.age_order()])
    np.testing.assert_allclose(comp.raw_priorities(comp.age_order()), full.raw_priorities(full.age_order()))
