"""Adam and RMSprop on torch parameters, without torch.optim.

torch.optim's optimizers import torch._dynamo on their first use (about 0.9 s of CPU and 70 MiB in every rank
that builds one). These are torch's multi-tensor (`foreach=True`) updates, step for step (bit-identical:
tests/unit/test_torch_optim.py): a handful of kernel calls a step for all the parameters, not a handful per
parameter as torch's CPU default runs. State has torch's `state_dict()` layout, so checkpoints written with
torch.optim (drlmpi before these) load and continue. What the algorithms use of an optimizer: `param_groups` (one
group; its "lr" is annealed in place), `zero_grad()`, `step()`, `state_dict()`, `load_state_dict()`.
"""

import torch


class _Optimizer:
    hyper: tuple[str, ...] = ()  # the group keys a checkpoint must carry (others, such as torch's flags, are ignored)

    def __init__(self, params, **group) -> None:
        self.params = [p for p in params]
        self.param_groups = [{**group, "params": self.params}]
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of the parameters that have a gradient (the others and their state stay as they are)."""
        live = [(i, p) for i, p in enumerate(self.params) if p.grad is not None]
        if live:
            states = [self.state.get(i) or self.state.setdefault(i, self.fresh(p)) for i, p in live]
            torch._foreach_add_([s["step"] for s in states], 1.0)
            self.update([p for _, p in live], [p.grad for _, p in live], states, self.param_groups[0])

    def state_dict(self) -> dict:
        """{"param_groups": [{hyperparameters, "params": [0..n-1]}], "state": {index: {name: tensor}}}."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"param_groups": [{**group, "params": list(range(len(self.params)))}],
                "state": {i: dict(s) for i, s in self.state.items()}}

    def load_state_dict(self, sd: dict) -> None:
        """Hyperparameters and per-parameter state, checked against these parameters (count and shapes) before
        any of it is taken (ValueError)."""
        (group,) = sd["param_groups"]
        if len(group["params"]) != len(self.params):
            raise ValueError(f"optimizer state for {len(group['params'])} parameters, not {len(self.params)}")
        if missing := [k for k in self.hyper if k not in group]:
            raise ValueError(f"optimizer state without {', '.join(missing)}: not {type(self).__name__}'s")
        state = {}
        for i, s in sd["state"].items():
            if not 0 <= int(i) < len(self.params):
                raise ValueError(f"optimizer state of parameter {i}, of {len(self.params)}")
            p = self.params[int(i)]
            fresh = self.fresh(p)
            if set(s) != set(fresh) or any(s[k].shape != v.shape for k, v in fresh.items()):
                raise ValueError(f"optimizer state of parameter {i} does not fit its {tuple(p.shape)} shape")
            state[int(i)] = {k: torch.as_tensor(s[k]).to(v, copy=True) for k, v in fresh.items()}
        self.param_groups[0].update({k: group[k] for k in self.hyper})
        self.state = state


class Adam(_Optimizer):
    """torch.optim.Adam's update (no weight decay, no amsgrad), state: step, exp_avg, exp_avg_sq."""

    hyper = ("lr", "betas", "eps")

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps)

    @staticmethod
    def fresh(p: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    @staticmethod
    def update(ps: list, gs: list, states: list[dict], group: dict) -> None:
        """For each parameter p, gradient g, step t: m <- lerp(m, g, 1 - b1); v <- b2 v + (1 - b2) g^2;
        p <- p - lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
        beta1, beta2 = group["betas"]
        m, v = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        t = [s["step"].item() for s in states]
        torch._foreach_lerp_(m, gs, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, gs, gs, 1 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, [(1 - beta2**k) ** 0.5 for k in t])
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(ps, m, denom, [(group["lr"] / (1 - beta1**k)) * -1 for k in t])


class RMSprop(_Optimizer):
    """torch.optim.RMSprop's update (not centered, no momentum or weight decay), state: step, square_avg."""

    hyper = ("lr", "alpha", "eps")

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps)

    @staticmethod
    def fresh(p: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"step": torch.tensor(0.0), "square_avg": torch.zeros_like(p)}

    @staticmethod
    def update(ps: list, gs: list, states: list[dict], group: dict) -> None:
        """For each parameter p and gradient g: sq <- alpha sq + (1 - alpha) g^2; p <- p - lr g / (sqrt(sq) + eps)."""
        sq = [s["square_avg"] for s in states]
        torch._foreach_mul_(sq, group["alpha"])
        torch._foreach_addcmul_(sq, gs, gs, value=1 - group["alpha"])
        avg = torch._foreach_sqrt(sq)
        torch._foreach_add_(avg, group["eps"])
        torch._foreach_addcdiv_(ps, gs, avg, value=-group["lr"])


@torch.no_grad()
def clip_grad_norm(params: list, max_norm: float, scale: float = 1.0) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ (global 2-norm, scaled by min(1, max_norm / (norm + 1e-6))) over a list of
    parameters made once, without torch's per-call grouping by device and dtype; returns the norm before clipping.
    scale: the gradients are first multiplied by it (a sum turned into a mean), folded into the one clipping
    multiply."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) * scale
    torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0) * scale)
    return norm
