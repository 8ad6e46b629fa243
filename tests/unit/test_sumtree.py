"""The C++ SumTree against the pure-Python reference tree and the math of prioritized sampling."""

import math
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drlmpi.replay import SumTree
from drlmpi.replay.reference import ReferenceSumTree


def test_empty_tree():
    t = SumTree(5)
    assert t.capacity == 5
    assert t.total() == 0.0
    assert t.min() == math.inf
    np.testing.assert_array_equal(t.get(np.arange(5)), np.zeros(5))
    with pytest.raises(ValueError):
        t.sample(np.array([0.0]))


@pytest.mark.parametrize("capacity", [1, 2, 7, 8, 9, 63, 64, 65, 513, 4096, 100_003])
def test_each_leaf_owns_its_interval(capacity):
    rng = np.random.default_rng(capacity)
    t = SumTree(capacity)
    # dyadic priorities make every partial sum exact, so intervals are exact too
    p = rng.integers(0, 5, capacity).astype(np.float64) / 4
    p[rng.integers(0, capacity)] = 1.0
    t.update(np.arange(capacity), p)
    assert t.total() == p.sum()
    starts = np.concatenate([[0.0], np.cumsum(p)[:-1]])
    live = np.flatnonzero(p > 0)
    # u at the start of each live leaf's interval, and just below its end
    np.testing.assert_array_equal(t.sample(starts[live]), live)
    ends = np.nextafter(starts[live] + p[live], 0)
    np.testing.assert_array_equal(t.sample(ends), live)


def test_unset_leaves_never_sampled_at_float_edge():
    t = SumTree(1000)
    t.update(np.array([3, 500]), np.array([0.1, 0.7]))  # inexact sums
    edge = np.nextafter(t.total(), 0)
    u = np.array([edge, np.nextafter(edge, 0), 0.0, 0.1, 0.09999999999999999])
    got = t.sample(u)
    assert set(got.tolist()) <= {3, 500}
    assert got[0] == 500 and got[2] == 3


def test_priority_zero_leaf_never_sampled_but_counts_in_min():
    t = SumTree(16)
    t.update(np.array([0, 1, 2]), np.array([1.0, 0.0, 1.0]))
    assert t.min() == 0.0
    got = t.sample(np.linspace(0, 2, 1000, endpoint=False))
    assert set(got.tolist()) == {0, 2}
    assert (got == 0).sum() == 500


def test_duplicates_last_wins_and_min_tracks_updates():
    t = SumTree(100)
    t.update(np.array([7, 7, 7]), np.array([5.0, 1.0, 3.0]))
    assert t.get(np.array([7]))[0] == 3.0
    assert t.total() == 3.0
    assert t.min() == 3.0
    t.update(np.array([9]), np.array([0.5]))
    assert t.min() == 0.5
    t.update(np.array([9]), np.array([4.0]))
    assert t.min() == 3.0


def test_bad_input_raises_and_changes_nothing():
    t = SumTree(10)
    t.update(np.array([1]), np.array([2.0]))
    cases = [
        (ValueError, lambda: t.update(np.array([1, 2]), np.array([1.0]))),
        (ValueError, lambda: t.update(np.array([2]), np.array([np.nan]))),
        (ValueError, lambda: t.update(np.array([2]), np.array([np.inf]))),
        (ValueError, lambda: t.update(np.array([2, 3]), np.array([1.0, -1.0]))),
        (IndexError, lambda: t.update(np.array([2, 10]), np.array([1.0, 1.0]))),
        (IndexError, lambda: t.update(np.array([-1]), np.array([1.0]))),
        (IndexError, lambda: t.get(np.array([10]))),
        (ValueError, lambda: t.sample(np.array([2.0]))),
        (ValueError, lambda: t.sample(np.array([-0.1]))),
        (ValueError, lambda: t.sample(np.array([np.nan]))),
        (TypeError, lambda: t.update(np.array([1.5]), np.array([1.0]))),
        (ValueError, lambda: t.update(np.zeros((2, 2), np.int64), np.ones(4))),
        (ValueError, lambda: SumTree(0)),
    ]
    for exc, call in cases:
        with pytest.raises(exc):
            call()
    assert t.total() == 2.0
    np.testing.assert_array_equal(t.get(np.arange(10)), np.eye(10)[1] * 2.0)


def test_sampling_frequencies_match_priorities():
    rng = np.random.default_rng(1)
    p = rng.random(50) ** 2
    t = SumTree(50)
    t.update(np.arange(50), p)
    n = 200_000
    counts = np.bincount(t.sample(rng.random(n) * t.total()), minlength=50)
    expected = n * p / p.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 100, chi2  # 49 dof: p(chi2 > 100) < 1e-5


def test_batched_calls_release_the_gil():
    t = SumTree(1 << 20)
    t.update(np.arange(1 << 20), np.ones(1 << 20))
    u = np.random.default_rng(0).random(1 << 21) * t.total()
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    th = threading.Thread(target=ticker)
    th.start()
    time.sleep(0.01)
    start = time.perf_counter()
    t.sample(u)
    end = time.perf_counter()
    stop.set()
    th.join()
    during = [x for x in ticks if start < x < end]
    assert end - start > 0.02, "workload too small to observe"
    assert len(during) >= 3, (end - start, len(during))


priorities = st.lists(st.integers(0, 16).map(lambda k: k / 8), min_size=1, max_size=80)


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 80),
    batches=st.lists(st.tuples(st.lists(st.integers(0, 79), min_size=0, max_size=20), priorities), max_size=6),
    fractions=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=30),
)
def test_matches_reference(capacity, batches, fractions):
    tree, ref = SumTree(capacity), ReferenceSumTree(capacity)
    for idx, pri in batches:
        n = min(len(idx), len(pri))
        idx = np.array([i % capacity for i in idx[:n]], dtype=np.int64)
        pri = np.array(pri[:n], dtype=np.float64)
        tree.update(idx, pri)
        ref.update(idx, pri)
    assert tree.total() == ref.total()
    assert tree.min() == ref.min()
    np.testing.assert_array_equal(tree.get(np.arange(capacity)), ref.get(np.arange(capacity)))
    if ref.total() > 0:
        u = np.array(fractions) * ref.total()
        np.testing.assert_array_equal(tree.sample(u), ref.sample(u))


def test_lazy_min_is_exact_after_any_interleaving_of_updates():
    """The min-tree is refreshed on min(): it must equal numpy's minimum over the leaves ever set after updates that
    lower and raise the current minimum, on a tree of several levels."""
    rng = np.random.default_rng(1)
    cap = 10_000
    t, ref = SumTree(cap), np.full(cap, np.inf)
    for k in range(300):
        idx = rng.integers(0, cap, rng.integers(1, 600))
        p = rng.random(len(idx)) * 10
        if k % 7 == 3:  # raise the current minimum's leaf: the min must move up
            idx = np.append(idx, np.argmin(ref))
            p = np.append(p, 20.0)
        t.update(idx, p)
        for i, v in zip(idx, p):  # duplicates: the last wins, as in the tree
            ref[i] = v
        if k % 3 == 0:
            assert t.min() == ref.min()
    assert t.min() == ref.min() and t.total() == pytest.approx(ref[np.isfinite(ref)].sum())
