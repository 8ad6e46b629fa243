"""Sum-tree benchmark: drlmpi's C++ SumTree against cpprb and a vectorized numpy tree, in one run.

Capacity 2^20 (full), batches of 512. Each contender does the same work:
  update: priorities p -> p^alpha written at random indices;
  sample: stratified uniforms -> indices, sampling probabilities and importance weights;
  cycle:  one update then one sample, as a learner does per batch. drlmpi's min-tree is refreshed lazily by the
          first min() after updates, so part of its update's work is paid in the next sample: the cycle is the
          figure that counts it wherever it falls (cpprb and the numpy tree do all of theirs in update).

Usage: python benchmarks/sumtree.py [--capacity 1048576] [--batch 512]
"""

import argparse
import itertools

import numpy as np
from _timing import best_of, machine

from drlmpi.replay import SumTree

ALPHA, BETA = 0.6, 0.4
ALPHA32 = np.float32(ALPHA)


class NumpyTree:
    """Binary sum-tree in one numpy array, updated and searched level by level over the whole batch."""

    def __init__(self, capacity: int):
        self.size = 1 << (capacity - 1).bit_length()
        self.tree = np.zeros(2 * self.size)
        self.depth = self.size.bit_length() - 1

    def update(self, idx, p):
        node = idx + self.size
        self.tree[node] = p
        for _ in range(self.depth):
            node = np.unique(node >> 1)
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]

    def sample(self, u):
        node = np.ones(len(u), dtype=np.int64)
        u = u.copy()
        for _ in range(self.depth):
            left = 2 * node
            lv = self.tree[left]
            go_right = u >= lv
            u = np.where(go_right, u - lv, u)
            node = np.where(go_right, left + 1, left)
        return node - self.size


def batches(capacity, batch, rng, n=256):
    """Endless cycles of n pre-drawn index and priority batches (fresh cache lines on each call).

    Priorities are float32, as TD errors come from the learner (cpprb keeps float32 too).
    """
    idx = rng.integers(0, capacity, (n, batch))
    pri = (rng.random((n, batch)) + 1e-3).astype(np.float32)
    return itertools.cycle(idx), itertools.cycle(pri)


def drlmpi_contender(capacity, batch, rng):
    tree = SumTree(capacity)
    tree.update(np.arange(capacity), rng.random(capacity) ** ALPHA)
    idx, pri = batches(capacity, batch, rng)
    base = np.arange(batch)

    def update():
        tree.update(next(idx), next(pri) ** ALPHA32)

    def sample():
        total = tree.total()
        u = (base + rng.random(batch)) * (total / batch)
        i = tree.sample(np.minimum(u, np.nextafter(total, 0)))
        prob = tree.get(i) / total
        w = (prob * capacity) ** -BETA / (tree.min() / total * capacity) ** -BETA
        return i, prob, w

    return update, sample


def numpy_contender(capacity, batch, rng):
    tree = NumpyTree(capacity)
    tree.update(np.arange(capacity), rng.random(capacity) ** ALPHA)
    idx, pri = batches(capacity, batch, rng)
    base = np.arange(batch)
    leaves = tree.tree[tree.size : tree.size + capacity]

    def update():
        tree.update(next(idx), next(pri) ** ALPHA32)

    def sample():
        total = tree.tree[1]
        u = (base + rng.random(batch)) * (total / batch)
        i = tree.sample(np.minimum(u, np.nextafter(total, 0)))
        prob = leaves[i] / total
        w = (prob * capacity) ** -BETA / (leaves.min() / total * capacity) ** -BETA
        return i, prob, w

    return update, sample


def cpprb_contender(capacity, batch, rng):
    from cpprb import PrioritizedReplayBuffer

    rb = PrioritizedReplayBuffer(capacity, {"a": {"shape": 1, "dtype": np.uint8}}, alpha=ALPHA)
    chunk = 1 << 16
    for _ in range(0, capacity, chunk):
        rb.add(a=np.zeros((chunk, 1), np.uint8), priorities=rng.random(chunk) + 1e-3)
    idx, pri = batches(capacity, batch, rng)

    def update():
        rb.update_priorities(next(idx), next(pri))

    def sample():
        s = rb.sample(batch, beta=BETA)
        return s["indexes"], s["weights"]

    return update, sample


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capacity", type=int, default=1 << 20)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    results = {}
    for name, make in [("drlmpi", drlmpi_contender), ("cpprb", cpprb_contender), ("numpy", numpy_contender)]:
        update, sample = make(args.capacity, args.batch, rng)
        def cycle(update=update, sample=sample):
            update()
            sample()

        results[name] = (best_of(update, number=300), best_of(sample, number=300), best_of(cycle, number=300))
    print(f"sum-tree, capacity {args.capacity}, batch {args.batch}; {machine()}")
    print(f"{'contender':<10} {'update us':>10} {'sample us':>10} {'cycle us':>10}")
    for name, (u, s, c) in results.items():
        print(f"{name:<10} {u * 1e6:>10.1f} {s * 1e6:>10.1f} {c * 1e6:>10.1f}")
    d = results["drlmpi"]
    for peer in ("cpprb", "numpy"):
        p = results[peer]
        print(f"drlmpi speed-up over {peer}: update {p[0] / d[0]:.1f}x, sample {p[1] / d[1]:.1f}x, "
              f"cycle {p[2] / d[2]:.1f}x")


if __name__ == "__main__":
    main()
