"""nets.optim's Adam and RMSprop: torch.optim's multi-tensor updates step for step (bit-identical, lr annealed in
place, parameters with no gradient left alone); its global-norm clipping torch's; state from either (checkpoints
written before them held torch.optim's) continuing in them through a checkpoint's arrays; state for other
parameters refused; and no torch._dynamo in a process that trains with them (what they are for)."""

import copy
import subprocess
import sys

import pytest
import torch

from drlmpi.lifecycle import load_optim_state, optim_state
from drlmpi.nets.optim import Adam, RMSprop, clip_grad_norm

PAIRS = [(Adam, torch.optim.Adam, {"lr": 3e-3, "eps": 1e-5}),
         (RMSprop, torch.optim.RMSprop, {"lr": 7e-4, "alpha": 0.99, "eps": 1e-5})]


def twins():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    return a, copy.deepcopy(a)


def train(net, opt, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        net(torch.randn(16, 4, generator=g)).pow(2).mean().backward()
        if t % 3 == 0:
            net[2].bias.grad = None  # no gradient this step: no update, no state change
        for group in opt.param_groups:
            group["lr"] *= 0.99
        opt.step()


def same(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("ours,theirs,kw", PAIRS, ids=["adam", "rmsprop"])
def test_the_same_updates_as_torch_optim_bit_for_bit(ours, theirs, kw):
    a, b = twins()
    train(a, ours(a.parameters(), **kw), 60, seed=1)
    train(b, theirs(b.parameters(), **kw, foreach=True), 60, seed=1)
    assert same(a, b)
    before = copy.deepcopy(a)
    train(a, ours(a.parameters(), **kw), 1, seed=2)
    assert not same(a, before)  # (the comparison can fail)


@pytest.mark.parametrize("ours,theirs,kw", PAIRS, ids=["adam", "rmsprop"])
@pytest.mark.parametrize("first", ["torch", "ours"])
def test_state_from_torch_optim_or_ours_continues_in_ours_through_a_checkpoints_arrays(ours, theirs, kw, first):
    a, b = twins()
    oa = theirs(a.parameters(), **kw, foreach=True) if first == "torch" else ours(a.parameters(), **kw)
    ob = ours(b.parameters(), **kw)
    train(a, oa, 20, seed=1)
    b.load_state_dict(a.state_dict())
    load_optim_state(ob, optim_state(oa))
    assert ob.param_groups[0]["lr"] == oa.param_groups[0]["lr"] < kw["lr"]
    train(a, oa, 20, seed=2)
    train(b, ob, 20, seed=2)
    assert same(a, b), "the moments and step counts came across: the next updates are the same"


@pytest.mark.parametrize("scale", [0.01, 100.0])
def test_clip_grad_norm_clips_as_torch_does(scale):
    a, b = twins()
    for net in (a, b):
        net(torch.randn(16, 4, generator=torch.Generator().manual_seed(3))).pow(2).mean().mul(scale).backward()
    a[2].bias.grad = b[2].bias.grad = None
    ours = clip_grad_norm(list(a.parameters()), 0.5)
    theirs = torch.nn.utils.clip_grad_norm_(b.parameters(), 0.5)
    torch.testing.assert_close(ours, theirs)
    for p, q in zip(a.parameters(), b.parameters()):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=0)
    assert (ours > 0.5) == (scale > 1)  # one case clips, the other does not


def test_state_for_other_parameters_is_refused():
    a, _ = twins()
    opt = Adam(a.parameters())
    train(a, opt, 2, seed=1)
    saved = optim_state(opt)
    other = torch.nn.Sequential(torch.nn.Linear(4, 9), torch.nn.Tanh(), torch.nn.Linear(9, 2))
    with pytest.raises(ValueError, match="shape"):
        load_optim_state(Adam(other.parameters()), saved)
    with pytest.raises(ValueError, match="4 parameters, not 2"):
        load_optim_state(Adam(torch.nn.Linear(4, 2).parameters()), saved)
    with pytest.raises(ValueError, match="without alpha: not RMSprop's"):
        load_optim_state(RMSprop(a.parameters()), saved)
    crafted = {**saved, "state": {"7": saved["state"]["0"]}, "groups": [{**saved["groups"][0], "lr": 1.0}]}
    fresh = Adam(a.parameters(), lr=0.5)
    with pytest.raises(ValueError, match="parameter 7, of 4"):
        load_optim_state(fresh, crafted)
    assert fresh.param_groups[0]["lr"] == 0.5 and not fresh.state, "nothing of a refused state was taken"


def test_a_process_training_with_them_never_imports_torch_dynamo():
    code = ("import sys, torch\nfrom drlmpi.nets.optim import Adam, RMSprop\n"
            "net = torch.nn.Linear(3, 2)\n"
            "for opt in (Adam(net.parameters()), RMSprop(net.parameters())):\n"
            "    opt.zero_grad(); net(torch.ones(1, 3)).sum().backward(); opt.step()\n"
            "    opt.load_state_dict(opt.state_dict())\n"
            "print('torch._dynamo' in sys.modules)\n"
            "torch.optim.Adam(net.parameters())\n"
            "print('torch._dynamo' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["False", "True"], r.stdout + r.stderr  # (and torch.optim's would)


@pytest.mark.parametrize("factor", [0.01, 40.0])
def test_clip_grad_norm_with_a_scale_is_the_multiply_then_the_clip(factor):
    """clip_grad_norm(params, max_norm, scale) folds a sum-to-mean multiply into the clip: the same gradients and
    norm as multiplying by `scale` first and then clipping as torch does."""
    a, b = twins()
    for net in (a, b):
        net(torch.randn(16, 4, generator=torch.Generator().manual_seed(4))).pow(2).mean().mul(10.0).backward()
    ours = clip_grad_norm(list(a.parameters()), 0.5, scale=factor)
    for p in b.parameters():
        p.grad.mul_(factor)
    theirs = torch.nn.utils.clip_grad_norm_(b.parameters(), 0.5)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-9)
    assert (ours > 0.5) == (factor > 1), ours  # one case clips, the other does not
