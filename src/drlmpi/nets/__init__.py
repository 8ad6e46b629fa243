"""Networks: MLP and Nature-CNN torsos, dueling Q heads, Q(s, a) for a box of actions, an LSTM core, a recurrent
Q-network, actor-critic heads.

Image observations get a convolutional torso: Atari's uint8 [C, 84, 84] stacks the Nature CNN (inputs scaled by
1/255), MinAtar's bool [C, 10, 10] grids the MinAtar paper's network (one 3x3 convolution of 16 channels, then 128
units); vector observations [D] get an MLP.
"""

import numpy as np
import torch
from torch import nn

from drlmpi.errors import invariant


def is_image(obs_shape: tuple[int, ...]) -> bool:
    return len(obs_shape) == 3


class NatureCNN(nn.Module):
    """[B, C, 84, 84] uint8 -> [B, 512] (Mnih et al. 2015)."""

    def __init__(self, in_channels: int, out_dim: int = 512):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, out_dim), nn.ReLU(),
        )
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 255.0)


class MinAtarCNN(nn.Module):
    """[B, C, H, W] bool or 0/1 (MinAtar: H = W = 10) -> [B, out_dim] (Young & Tian 2019): a 3x3 convolution of 16
    channels, stride 1, ReLU, then a fully connected layer of out_dim units, ReLU."""

    def __init__(self, obs_shape: tuple[int, ...], out_dim: int = 128):
        super().__init__()
        c, h, w = obs_shape
        self.net = nn.Sequential(nn.Conv2d(c, 16, 3, stride=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(16 * (h - 2) * (w - 2), out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())


def conv_torso(obs_shape: tuple[int, ...]) -> nn.Module:
    """The Nature CNN for 84x84 frame stacks, the MinAtar network for any other image."""
    return NatureCNN(obs_shape[0]) if tuple(obs_shape[1:]) == (84, 84) else MinAtarCNN(obs_shape)


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
FUNCTIONS = {"relu": torch.relu, "tanh": torch.tanh}


class MLP(nn.Module):
    """[B, D] -> [B, hidden[-1]] with the activation (ACTIVATIONS: relu or tanh) after every layer.

    forward calls the layers' functions directly, not through nn.Module.__call__ (about 3 us a layer saved: PPO's
    small minibatches are made of such overheads); `net` keeps the modules and the state_dict's names."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], activation: str = "relu"):
        super().__init__()
        layers, d = [], in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), ACTIVATIONS[activation]()]
            d = h
        self.net = nn.Sequential(*layers)
        self.out_dim = d
        self.act, self.linears = FUNCTIONS[activation], tuple(layers[::2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        for layer in self.linears:
            x = self.act(nn.functional.linear(x, layer.weight, layer.bias))
        return x


def torso(obs_shape: tuple[int, ...], hidden: tuple[int, ...], activation: str = "relu") -> nn.Module:
    if is_image(obs_shape):
        return conv_torso(obs_shape)
    return MLP(int(np.prod(obs_shape)), hidden, activation)


class QNetwork(nn.Module):
    """obs [B, *obs_shape] -> Q [B, A]; dueling: Q = V + A - mean(A)."""

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, hidden: tuple[int, ...] = (256, 256),
                 dueling: bool = True):
        super().__init__()
        self.torso = torso(obs_shape, hidden)
        self.dueling = dueling
        d = self.torso.out_dim
        if dueling:
            self.value = nn.Linear(d, 1)
            self.advantage = nn.Linear(d, num_actions)
        else:
            self.q = nn.Linear(d, num_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.torso(obs.flatten(1) if obs.dim() > 2 and not is_image(tuple(obs.shape[1:])) else obs)
        if not self.dueling:
            return self.q(h)
        adv = self.advantage(h)
        return self.value(h) + adv - adv.mean(dim=1, keepdim=True)


class StateActionQ(nn.Module):
    """Q(s, a) for a box of actions (QT-Opt): obs [B, *obs_shape], action [B, A] (scaled from [low, high] to
    [-1, 1]) -> Q [B]. Vector observations: an MLP on the concatenation; images: the convolutional torso's features
    concatenated with the action, then the MLP."""

    def __init__(self, obs_shape: tuple[int, ...], low: np.ndarray, high: np.ndarray, hidden: tuple[int, ...] = (256,
                                                                                                                256)):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.register_buffer("centre", torch.as_tensor((np.asarray(high) + np.asarray(low)) / 2, dtype=torch.float32))
        self.register_buffer("radius", torch.as_tensor((np.asarray(high) - np.asarray(low)) / 2, dtype=torch.float32))
        a_dim = int(np.prod(np.shape(low)))
        self.cnn = conv_torso(self.obs_shape) if is_image(self.obs_shape) else None
        d = self.cnn.out_dim if self.cnn else int(np.prod(obs_shape))
        self.mlp = MLP(d + a_dim, hidden)
        self.q = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        h = self.cnn(obs) if self.cnn else obs.reshape(obs.shape[0], -1).float()
        a = (action.reshape(action.shape[0], -1) - self.centre) / self.radius
        return self.q(self.mlp(torch.cat([h, a], dim=1))).squeeze(1)


class LSTMCore(nn.Module):
    """A time-major LSTM whose state is reset at episode starts: x [T, B, D], state (h, c) [B, H] each,
    reset [T, B] bool (True: step t starts an episode, so it sees a zero state) -> (out [T, B, H], state).

    The steps between resets go through one fused `nn.LSTM` call (3x faster than a loop of cells on CPU): a batch
    with resets at k distinct steps costs k + 1 calls."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden)
        self.out_dim = hidden

    def initial_state(self, batch: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros(batch, self.out_dim, device=device)
        return z, z.clone()

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], reset: torch.Tensor | None = None):
        assert x.dim() == 3 and (reset is None or reset.shape == x.shape[:2]), "x [T, B, D], reset [T, B]"
        h, c = state[0][None], state[1][None]
        starts = [0] if reset is None else [0, *(torch.nonzero(reset[1:].any(1)).flatten() + 1).tolist()]
        outs = []
        for k, t0 in enumerate(starts):
            t1 = starts[k + 1] if k + 1 < len(starts) else x.shape[0]
            if reset is not None:
                keep = (~reset[t0]).to(x.dtype)[None, :, None]
                h, c = h * keep, c * keep
            out, (h, c) = self.lstm(x[t0:t1], (h, c))
            outs.append(out)
        return torch.cat(outs) if len(outs) > 1 else outs[0], (h[0], c[0])


class RecurrentQNetwork(nn.Module):
    """R2D2's Q-network: the MLP or convolutional torso, an LSTM core, a dueling (or plain) head.

    forward(obs [T, B, *obs_shape], state (h, c) [B, H] each, reset [T, B] | None) -> (Q [T, B, A], state)."""

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, hidden: tuple[int, ...] = (64,),
                 lstm: int = 64, dueling: bool = True):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.torso = torso(obs_shape, hidden)
        self.core = LSTMCore(self.torso.out_dim, lstm)
        self.dueling = dueling
        self.value = nn.Linear(lstm, 1) if dueling else None
        self.advantage = nn.Linear(lstm, num_actions)

    def initial_state(self, batch: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.core.initial_state(batch, device)

    def forward(self, obs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], reset: torch.Tensor | None = None):
        T, B = obs.shape[:2]
        assert tuple(obs.shape[2:]) == self.obs_shape, f"obs [T, B, {self.obs_shape}], got {tuple(obs.shape)}"
        x = self.torso(obs.reshape(T * B, *self.obs_shape) if is_image(self.obs_shape) else obs.reshape(T * B, -1))
        out, state = self.core(x.view(T, B, -1), state, reset)
        adv = self.advantage(out)
        if not self.dueling:
            return adv, state
        return self.value(out) + adv - adv.mean(dim=2, keepdim=True), state


class ActorCritic(nn.Module):
    """A policy head and a state value on the MLP or convolutional torso, with an optional LSTM core (lstm > 0).

    forward(obs [T, B, *obs_shape], state, reset [T, B]) -> (head [T, B, A], value [T, B], state); state is
    () without a core, else the LSTMCore's (h, c). head: categorical logits, or with `continuous` the means of a
    diagonal Gaussian whose log standard deviation is the parameter `log_std` [A] (None when categorical;
    ops.policy takes both). separate: the value has a torso of its own (no LSTM then); activation: the MLP's
    (relu or tanh); orthogonal: PPO's initialisation (orthogonal, gain sqrt 2; the policy head's 0.01, the
    value's 1; biases 0).
    """

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, hidden: tuple[int, ...] = (64, 64),
                 lstm: int = 0, *, continuous: bool = False, separate: bool = False, activation: str = "relu",
                 orthogonal: bool = False):
        super().__init__()
        assert not (separate and lstm), "a separate value torso has no LSTM core"
        self.obs_shape = tuple(obs_shape)
        self.torso = torso(obs_shape, hidden, activation)
        self.value_torso = torso(obs_shape, hidden, activation) if separate else None
        d = self.torso.out_dim
        self.core = LSTMCore(d, lstm) if lstm else None
        d = lstm or d
        self.policy = nn.Linear(d, num_actions)
        self.value = nn.Linear(d, 1)
        self.log_std = nn.Parameter(torch.zeros(num_actions)) if continuous else None
        if orthogonal:
            orthogonal_init(self)

    def initial_state(self, batch: int, device=None) -> tuple:
        return self.core.initial_state(batch, device) if self.core else ()

    def forward(self, obs: torch.Tensor, state: tuple = (), reset: torch.Tensor | None = None):
        T, B = obs.shape[:2]
        assert tuple(obs.shape[2:]) == self.obs_shape, f"obs [T, B, {self.obs_shape}], got {tuple(obs.shape)}"
        x = obs.reshape(T * B, *self.obs_shape) if is_image(self.obs_shape) else obs.reshape(T * B, -1)
        h = self.torso(x)
        if self.core is not None:
            reset = torch.zeros(T, B, dtype=torch.bool, device=obs.device) if reset is None else reset
            out, state = self.core(h.view(T, B, -1), state, reset)
            h = out.reshape(T * B, -1)
        hv = h if self.value_torso is None else self.value_torso(x)
        return self.policy(h).view(T, B, -1), self.value(hv).view(T, B), state


def orthogonal_init(net: ActorCritic) -> None:
    """PPO's initialisation of an actor-critic: every linear and convolutional layer orthogonal with gain sqrt(2)
    and bias 0, then the policy head's gain 0.01 and the value head's 1."""
    for m in net.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            gain = 0.01 if m is net.policy else 1.0 if m is net.value else np.sqrt(2)
            nn.init.orthogonal_(m.weight, gain)
            nn.init.zeros_(m.bias)


class RunningMoments(nn.Module):
    """Running mean and variance of a stream of vectors [D] (buffers: checkpoints save them with the networks),
    merged a batch's moments at a time (Chan et al.'s parallel rule), so workers that merge the same reduced
    moments hold the same statistics. normalize(x [..., D]) -> (x - mean) / sqrt(var + eps), clipped to
    +-clip; scale(x) -> x / sqrt(var + eps), clipped (rewards)."""

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))

    def merge(self, n: float, total: np.ndarray, total_sq: np.ndarray) -> None:
        """Merge a batch of n vectors given their sum [D] and sum of squares [D] (float64)."""
        if n <= 0:
            return
        mean_b = torch.as_tensor(total, dtype=torch.float64) / n
        var_b = (torch.as_tensor(total_sq, dtype=torch.float64) / n - mean_b.pow(2)).clamp(min=0.0)
        n_a = self.count.clone()
        tot = n_a + n
        delta = mean_b - self.mean
        m2 = self.var * n_a + var_b * n + delta.pow(2) * n_a * n / tot
        self.mean += delta * n / tot
        self.var.copy_(m2 / tot)
        self.count.fill_(float(tot))

    def normalize(self, x: np.ndarray) -> np.ndarray:
        std = np.sqrt(self.var.numpy() + self.eps)
        return np.clip((x - self.mean.numpy()) / std, -self.clip, self.clip).astype(np.float32)

    def scale(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x / np.sqrt(self.var.numpy() + self.eps), -self.clip, self.clip).astype(np.float32)


def moments(x: np.ndarray) -> np.ndarray:
    """[count, sum [D], sum of squares [D]] of rows x [N, D], float64 [1 + 2D]: what workers allreduce before
    RunningMoments.merge."""
    x = x.reshape(len(x), -1).astype(np.float64)
    return np.concatenate([[len(x)], x.sum(0), (x * x).sum(0)])


def state_arrays(module: nn.Module) -> dict[str, np.ndarray]:
    """state_dict as numpy arrays (for HDF5)."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def load_arrays(module: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Load numpy arrays into module, or raise ValueError naming the first mismatch."""
    own = module.state_dict()
    missing = sorted(set(own) - set(arrays))
    extra = sorted(set(arrays) - set(own))
    if missing or extra:
        raise ValueError(f"parameters differ: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, v in own.items():
        if tuple(arrays[k].shape) != tuple(v.shape):
            raise ValueError(f"parameter {k}: shape {tuple(arrays[k].shape)} in file, {tuple(v.shape)} expected")
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in arrays.items()})


def device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def q_values(net: nn.Module, obs: np.ndarray) -> np.ndarray:
    """obs [E, ...] -> Q(obs, .) float32 [E, A] as numpy (a CPU network: an actor's)."""
    with torch.no_grad():
        return net(torch.as_tensor(obs)).numpy()


def greedy(net: nn.Module, obs: np.ndarray, device: torch.device) -> np.ndarray:
    """obs [E, ...] -> argmax_a Q(obs, a), int64 [E]."""
    with torch.no_grad():
        return net(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()


def flat_params(net: nn.Module) -> np.ndarray:
    """All parameters as one float32 vector [n] (the weights plane's layout)."""
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().cpu().numpy().astype(np.float32)


def load_flat(net: nn.Module, vec: np.ndarray) -> None:
    """Inverse of flat_params: copies vec [n] into the parameters in place (they never alias vec)."""
    src = torch.as_tensor(vec)
    offset = 0
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(src[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
    invariant(offset == len(vec), f"load_flat: {len(vec)} values for {offset} parameters")
