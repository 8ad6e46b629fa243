"""Networks and their flat-vector round trips (the weights plane's layout)."""

import numpy as np

from drlmpi.nets import QNetwork, flat_params, load_flat, q_values


def test_load_flat_copies_and_never_aliases_the_vector():
    a, b, c = (QNetwork((4,), 2, (8,), dueling=True) for _ in range(3))
    buf = flat_params(a)
    load_flat(b, buf)
    load_flat(c, buf)
    np.testing.assert_array_equal(flat_params(b), flat_params(a))
    buf[:] = 0  # a reader reusing its buffer for the next read (e.g. into a target network) changes no net
    np.testing.assert_array_equal(flat_params(b), flat_params(a))
    np.testing.assert_array_equal(flat_params(c), flat_params(a))
    obs = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_array_equal(q_values(b, obs), q_values(a, obs))
