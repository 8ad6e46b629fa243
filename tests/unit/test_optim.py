"""Optimizer steps against the formulas, in float64."""

import numpy as np

from drlmpi.ops.optim import adagrad_, rmsprop_


def test_rmsprop_and_adagrad_match_formulas():
    rng = np.random.default_rng(0)
    w0, gs = rng.normal(size=5), rng.normal(size=(4, 5))
    w, sq = w0.copy(), np.zeros(5)
    ref_w, ref_sq = w0.copy(), np.zeros(5)
    for g in gs:
        rmsprop_(w, g, sq, lr=0.1, alpha=0.9, eps=1e-3)
        ref_sq = 0.9 * ref_sq + 0.1 * g**2
        ref_w = ref_w - 0.1 * g / (np.sqrt(ref_sq) + 1e-3)
    np.testing.assert_allclose(w, ref_w, rtol=1e-12)
    w, acc = w0.copy(), np.zeros(5)
    for g in gs:
        adagrad_(w, g, acc, lr=0.1, eps=1e-8)
    np.testing.assert_allclose(acc, (gs**2).sum(0), rtol=1e-12)
    ref = w0.copy()
    run = np.zeros(5)
    for g in gs:
        run += g**2
        ref -= 0.1 * g / (np.sqrt(run) + 1e-8)
    np.testing.assert_allclose(w, ref, rtol=1e-12)


def test_adam_matches_torch():
    import torch

    from drlmpi.ops.optim import make

    rng = np.random.default_rng(1)
    w0, gs = rng.normal(size=7), rng.normal(size=(6, 7))
    p = torch.nn.Parameter(torch.tensor(w0))
    ref = torch.optim.Adam([p], lr=0.05, eps=1e-6)
    w = w0.copy()
    apply = make("adam", 7, np.float64, eps=1e-6)
    for g in gs:
        p.grad = torch.tensor(g)
        ref.step()
        apply(w, g, 0.05)
    np.testing.assert_allclose(w, p.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_make_unknown_optimizer():
    import pytest

    from drlmpi.ops.optim import make

    with pytest.raises(ValueError, match="optimizer must be one of"):
        make("sgdx", 3)
