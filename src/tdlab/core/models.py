"""Models: an MLP, small 1-D/2-D CNNs, the modular-arithmetic network, and PreAct ResNet-18 and
ResNet-34 for GPU-scale runs.

The MLP and CNNs use no batch norm and no in-place tricks, so :mod:`tdlab.core.sweep`
can stack E copies and run them with one ``vmap``'d call. PreAct ResNet-18 (He et
al. 2016, "Identity Mappings in Deep Residual Networks") has batch norm and is meant
for single runs at ``TDLAB_SCALE=paper``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from tdlab.core.config import check_choice, check_range

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


class Square(nn.Module):
    """x ↦ x², the activation of Gromov's modular-arithmetic network."""

    def forward(self, x):
        return x * x


ACTIVATIONS["square"] = Square


def _activation(name: str) -> nn.Module:
    check_choice("activation", name, tuple(ACTIVATIONS))
    return ACTIVATIONS[name]()


def scale_init_(model: nn.Module, init_scale: float) -> nn.Module:
    """Multiply every weight and bias of ``model`` by ``init_scale`` (α of lazy/rich studies)."""
    check_range("init_scale", init_scale, 0, low_open=True)
    if init_scale != 1.0:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(init_scale)
    return model


class MLP(nn.Module):
    """x → [Linear → activation] × depth → Linear, on flattened inputs.

    ``depth`` counts hidden layers; ``depth=0`` is a linear model.
    """

    def __init__(self, in_features: int, num_classes: int, width: int = 256, depth: int = 2,
                 activation: str = "relu", bias: bool = True, init_scale: float = 1.0):
        super().__init__()
        check_range("width", width, 1)
        check_range("depth", depth, 0)
        layers: list[nn.Module] = [nn.Flatten()]
        features = in_features
        for _ in range(depth):
            layers += [nn.Linear(features, width, bias=bias), _activation(activation)]
            features = width
        layers.append(nn.Linear(features, num_classes, bias=bias))
        self.net = nn.Sequential(*layers)
        scale_init_(self, init_scale)

    def forward(self, x):
        return self.net(x)

    def forward_stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor,
                        per_member: bool = False) -> torch.Tensor:
        """E MLPs of this shape at once: ``params[name]`` stacked to ``(E, ...)``, ``x`` shared (B, ...) or,
        with ``per_member``, one batch per member (E, B, ...) → ``(E, B, C)``.

        Each layer is one batched matrix product for all members, computed feature-major,
        hᵀ ← b + W hᵀ (``baddbmm``), so that the gradient of every W comes out in W's own
        layout and the logits in the class-major layout the loss wants. What
        :mod:`tdlab.core.sweep` runs for MLPs: on the CPU it is about twice as fast as
        ``vmap(functional_call)``, whose batched outputs come out strided.
        """
        members = next(iter(params.values())).shape[0]
        h = (x.flatten(2).transpose(1, 2) if per_member            # (E, features, B)
             else x.flatten(1).t().expand(members, -1, -1))
        for index, layer in enumerate(self.net):
            if isinstance(layer, nn.Flatten):
                continue
            if isinstance(layer, nn.Linear):
                weight, bias = params[f"net.{index}.weight"], params.get(f"net.{index}.bias")
                h = (torch.bmm(weight, h) if bias is None
                     else torch.baddbmm(bias.unsqueeze(2), weight, h))
            else:
                h = layer(h)  # an element-wise activation
        return h.transpose(1, 2)                                  # (E, B, C), a view


class CNN1d(nn.Module):
    """A small 1-D CNN for sequences such as MNIST-1D (input (B, L) or (B, 1, L)).

    Three conv layers (kernel 5, stride 2 on the last two) then a linear head — the
    shape of the MNIST-1D paper's CNN baseline.
    """

    def __init__(self, length: int, num_classes: int, channels: int = 32, activation: str = "relu"):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2), _activation(activation),
            nn.Conv1d(channels, channels, 5, stride=2, padding=2), _activation(activation),
            nn.Conv1d(channels, channels, 5, stride=2, padding=2), _activation(activation),
        )
        out_length = math.ceil(math.ceil(length / 2) / 2)
        self.head = nn.Linear(channels * out_length, num_classes)

    def forward(self, x):
        if x.dim() == 2:
            x = x.unsqueeze(-2)
        return self.head(self.features(x).flatten(-2))


class CNN2d(nn.Module):
    """A small 2-D CNN for images (C, H, W): two conv blocks with 2×2 pooling, then a linear head."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 32, image_size: int = 8,
                 activation: str = "relu"):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), _activation(activation),
            nn.Conv2d(channels, channels, 3, padding=1), _activation(activation), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), _activation(activation), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.head = nn.Linear(2 * channels * side * side, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(-3))


class GhostBatchNorm(nn.BatchNorm1d):
    r"""Batch norm whose training statistics come from *ghost batches* (Hoffer, Hubara & Soudry 2017,
    "Train longer, generalize better", Sec. 4, Algorithm 1; ``main_gbn.py`` of eladhoffer/bigBatch).

    In training mode a batch of B examples is cut, in order, into ⌈B / B_g⌉ ghost batches of
    ``ghost_batch_size`` B_g (the last one smaller if B_g does not divide B), and every ghost batch
    is normalised with its own mean and (biased) variance,

    .. math:: \hat x_i = \gamma\,\frac{x_i - \mu_k}{\sqrt{\sigma_k^2 + \epsilon}} + \beta, \qquad i \in \text{ghost batch } k,

    exactly as :class:`torch.nn.BatchNorm1d` applied to each ghost batch separately. The running
    statistics are updated once per ghost batch, in order, r ← (1 − m) r + m s_k, which for K ghost
    batches is r_K = (1 − m)^K r_0 + Σ_k m (1 − m)^{K−k} s_k (the running variance takes the unbiased
    s_k = σ_k² G/(G − 1), as batch norm does). In eval mode the running statistics normalise, as in
    batch norm. ``ghost_batch_size=None`` (or ≥ B) is ordinary batch norm. Input (B, F) or (B, F, L).
    """

    def __init__(self, num_features: int, ghost_batch_size: int | None = None, eps: float = 1e-5,
                 momentum: float = 0.1, affine: bool = True):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        if ghost_batch_size is not None:
            check_range("ghost_batch_size", ghost_batch_size, 2)
        self.ghost_batch_size = ghost_batch_size

    def forward(self, x):
        size = self.ghost_batch_size
        if not self.training or size is None or x.shape[0] <= size:
            return super().forward(x)
        full = (x.shape[0] // size) * size
        parts = [self._ghosts(x[:full], size)]
        if full < x.shape[0]:                                      # the last, smaller ghost batch
            parts.append(super().forward(x[full:]))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _ghosts(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """Every ghost batch of ``size`` normalised by its own statistics, in one pass; running stats updated."""
        count = x.shape[0] // size
        g = x.reshape(count, size, *x.shape[1:])                  # (K, G, F[, L])
        dims = (1,) if x.dim() == 2 else (1, 3)
        mean = g.mean(dims, keepdim=True)                         # μ_k
        var = g.var(dims, unbiased=False, keepdim=True)           # σ_k² (biased, as batch norm normalises)
        out = (g - mean) * torch.rsqrt(var + self.eps)
        shape = (1, 1, -1) + (1,) * (x.dim() - 2)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats:
            with torch.no_grad():
                n = size * (1 if x.dim() == 2 else x.shape[-1])
                m = self.momentum
                weights = m * (1 - m) ** torch.arange(count - 1, -1, -1, dtype=x.dtype, device=x.device)
                self.running_mean.mul_((1 - m) ** count).add_(weights @ mean.reshape(count, -1))
                self.running_var.mul_((1 - m) ** count).add_(weights @ var.reshape(count, -1) * (n / (n - 1)))
                self.num_batches_tracked.add_(count)
        return out.reshape(x.shape)


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct ResNet-18 for 32×32 images (the ELR / mixup / CutMix CIFAR backbone)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        layers, planes = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            out = width * 2**i
            layers += [PreActBlock(planes, out, stride), PreActBlock(out, out, 1)]
            planes = out
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(planes)
        self.head = nn.Linear(planes, num_classes)

    def forward(self, x):
        out = self.layers(self.conv1(x))
        out = torch.relu(self.bn(out))
        return self.head(out.mean(dim=(-2, -1)))


class BasicBlock(nn.Module):
    """The residual block of ResNet-18/34 (He et al. 2016): two 3×3 convs with batch norm, plus the
    input (through a 1×1 conv and batch norm when the shape changes)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """The CIFAR ResNet of He et al. (2016) with a 3×3 stem: ``blocks=(3, 4, 6, 3)`` is ResNet-34,
    the network of the ELR paper's CIFAR experiments (its ``ResNet34``), ``(2, 2, 2, 2)`` ResNet-18."""

    def __init__(self, blocks=(3, 4, 6, 3), num_classes: int = 10, in_channels: int = 3, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, planes = [], width
        for i, count in enumerate(blocks):
            out = width * 2**i
            for j in range(count):
                layers.append(BasicBlock(planes, out, (1 if i == 0 else 2) if j == 0 else 1))
                planes = out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(planes, num_classes)

    def forward(self, x):
        out = self.layers(torch.relu(self.bn1(self.conv1(x))))
        return self.head(out.mean(dim=(-2, -1)))


def ResNet34(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-34 for 32×32 images (the ELR paper's CIFAR-10 network)."""
    return ResNet((3, 4, 6, 3), num_classes, in_channels)


MODELS = ("mlp", "cnn1d", "cnn2d", "preact_resnet18", "resnet34")


def build(name: str, data, **kwargs) -> nn.Module:
    """A model sized for ``data`` (a :class:`tdlab.core.data.Dataset`), by name."""
    check_choice("model", name, MODELS)
    classes = data.num_classes or 1
    shape = data.input_shape
    if name == "mlp":
        return MLP(math.prod(shape), classes, **kwargs)
    if name == "cnn1d":
        return CNN1d(shape[-1], classes, **kwargs)
    if name == "cnn2d":
        return CNN2d(shape[0], classes, image_size=shape[-1], **kwargs)
    if name == "resnet34":
        return ResNet34(classes, in_channels=shape[0], **kwargs)
    return PreActResNet18(classes, in_channels=shape[0], **kwargs)


class QuadraticModularNet(nn.Module):
    r"""The two-layer network of Gromov (2023) and Doshi et al. (2023) for arithmetic mod p:

    .. math::
        f(x) = W\,(U x_a + V x_b)^{\odot 2}, \qquad U, V \in \mathbb{R}^{N\times p},\;
        W \in \mathbb{R}^{p\times N},

    with x_a, x_b the one-hot vectors of a, b ∈ Z_p, an elementwise square and no
    biases. U, V and W are drawn from N(0, σ²) with σ = 0.5 / (2N)^{1/3}, the
    authors' ``fcn`` initialisation (``utils/models.py`` of d-doshi/Grokking).
    Row k of U and V and column k of W are the weights of hidden neuron k.

    Input: the concatenated one-hots [x_a, x_b] of shape (..., 2p) that
    :func:`tdlab.core.data.modular_arithmetic` makes, or the pairs (a, b) themselves,
    shape (..., 2). ``embedding=False`` (the default) multiplies the one-hots, as
    the authors' code does. ``embedding=True`` computes U x_a as the column lookup
    ``U[:, a]`` (``index_select``; the pair is read off a one-hot input with an
    argmax, so that input must be exactly one-hot): the same numbers without the
    (B × 2p)·(2p × N) product. On a CPU we measured it about 2× faster for a single
    model but about 2.5× *slower* under ``vmap`` (:mod:`tdlab.core.sweep`), whose batched
    gather/scatter-add is slow, so sweeps should keep the default. Pair input always
    uses the lookup. No in-place operations, no batch norm, so
    :func:`tdlab.core.sweep.sweep` can stack and ``vmap`` it.
    """

    def __init__(self, p: int = 97, width: int = 500, init_std: float | None = None,
                 embedding: bool = False):
        super().__init__()
        check_range("p", p, 2)
        check_range("width", width, 1)
        self.p, self.width, self.embedding = p, width, embedding
        std = 0.5 / (2 * width) ** (1 / 3) if init_std is None else init_std
        check_range("init_std", std, 0)
        first = torch.randn(width, 2 * p) * std      # the authors' fc1.weight = [U | V]
        self.U = nn.Parameter(first[:, :p].clone())
        self.V = nn.Parameter(first[:, p:].clone())
        self.W = nn.Parameter(torch.randn(p, width) * std)

    def pairs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) from one-hot input (..., 2p) or pairs (..., 2)."""
        if x.shape[-1] == 2:
            return x[..., 0].long(), x[..., 1].long()
        if x.shape[-1] != 2 * self.p:
            raise ValueError(f"input must have last size 2p = {2 * self.p} (one-hots) or 2 (pairs), "
                             f"got {tuple(x.shape)}")
        return x[..., :self.p].argmax(-1), x[..., self.p:].argmax(-1)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-activations U x_a + V x_b, shape (..., N)."""
        if x.shape[-1] == 2 * self.p and not self.embedding:
            return x[..., :self.p] @ self.U.T + x[..., self.p:] @ self.V.T
        a, b = self.pairs(x)
        shape = a.shape
        a, b = a.reshape(-1), b.reshape(-1)
        h = torch.index_select(self.U, 1, a) + torch.index_select(self.V, 1, b)   # (N, B)
        return h.T.reshape(*shape, self.width)

    def forward(self, x):
        h = self.hidden(x)
        return (h * h) @ self.W.T

    def forward_stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """E networks of this shape at once: ``params`` stacked to ``(E, ...)``, ``x`` (B, 2p) or (B, 2)
        shared → ``(E, B, p)``.

        U x_a + V x_b is read as rows of Uᵀ and Vᵀ (one ``index_select`` per member stack,
        backward an ``index_add``) instead of the (B × 2p)·(2p × N) one-hot product, and the
        readout is one batched matrix product. What :func:`tdlab.core.engine.run` uses for stacked
        members: 32 → 23 ms per step for 3 members at p = 59, N = 256, B = 2089 on 2 CPU
        threads (``vmap`` of :meth:`forward` for the one-hot product).
        """
        U, V = params["U"].transpose(1, 2), params["V"].transpose(1, 2)     # (E, p, N): neuron weights by input
        if x.shape[-1] == 2 * self.p and not _exact_pair_onehots(x, self.p):
            # mixed or noisy inputs (mixup, say): the one-hot product itself
            shape = x.shape[:-1]
            x = x.reshape(-1, 2 * self.p)
            h = torch.matmul(x[:, :self.p], U) + torch.matmul(x[:, self.p:], V)
        else:
            a, b = self.pairs(x)
            shape = a.shape
            h = U.contiguous().index_select(1, a.reshape(-1)) + V.contiguous().index_select(1, b.reshape(-1))
        out = torch.bmm(h * h, params["W"].transpose(1, 2))                  # (E, B, p) = (U x_a + V x_b)^{⊙2} Wᵀ
        return out.reshape(out.shape[0], *shape, self.p)


def _exact_pair_onehots(x: torch.Tensor, p: int) -> bool:
    """Whether every row of ``x`` (..., 2p) is two exact one-hots, [x_a, x_b]."""
    return bool(((x == 0) | (x == 1)).all() and (x[..., :p].sum(-1) == 1).all() and (x[..., p:].sum(-1) == 1).all())


class QuadraticFeatureNet(nn.Module):
    r"""The network of Kumar, Bordelon, Gershman & Pehlevan (ICLR 2024, Sec. 2) without its output
    scale α — a fixed readout of N neurons with a slightly quadratic activation:

    .. math::
        z(x) = \frac1N \sum_{i=1}^{N} \phi(w_i \cdot x), \qquad \phi(h) = h + \tfrac{\epsilon}{2} h^2,
        \qquad w_i \sim \mathcal{N}(0, I_D)

    (``W`` holds the w_i as rows; no biases, no trained readout). The paper's network is
    f = α z, centred on its initial output and trained with the step η = N/α²; the laziness α and
    the centring live in :class:`tdlab.core.losses.LazyMSE`, so that one stacked run can give every
    member its own α (a per-member loss coefficient; the model's shape is shared).
    Input (B, D) → output (B, 1).
    """

    def __init__(self, dim: int = 100, width: int = 500, eps: float = 0.02):
        super().__init__()
        check_range("dim", dim, 1)
        check_range("width", width, 1)
        self.dim, self.width, self.eps = dim, width, float(eps)
        self.W = nn.Parameter(torch.randn(width, dim))

    def phi(self, h: torch.Tensor) -> torch.Tensor:
        return h + 0.5 * self.eps * h * h                        # φ(h) = h + (ε/2) h²

    @staticmethod
    def statistics(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's sufficient statistics (Kumar et al. 2024, Sec. 3): the mean weight
        w̄ = (1/N) Σ_i w_i and M = (1/N) Σ_i w_i w_iᵀ, for ``W`` (…, N, D) → (…, D), (…, D, D)."""
        return W.mean(-2), torch.matmul(W.transpose(-1, -2), W) / W.shape[-2]

    def _output(self, W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # φ is quadratic, so (1/N) Σ_i φ(w_i·x) = w̄·x + (ε/2) xᵀ M x: no (B, N) pre-activations
        mean, second = self.statistics(W)
        linear = torch.matmul(x, mean.unsqueeze(-1)).squeeze(-1)              # w̄·x, (…, B)
        quadratic = (torch.matmul(x, second) * x).sum(-1)                     # xᵀ M x, (…, B)
        return (linear + 0.5 * self.eps * quadratic).unsqueeze(-1)

    def forward(self, x):
        return self._output(self.W, x)                                        # (B, 1)

    def forward_stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """E networks at once: ``params["W"]`` (E, N, D), ``x`` (B, D) shared → (E, B, 1). Through w̄ and M,
        as two matrix products shared by all members — w̄·x as x W̄ᵀ and xᵀ M x as (x ⊗ x) vec(M) — the
        cost is E·N·D² + B·E·D² instead of E·B·N·D for the pre-activations of every neuron (on a CPU,
        2.5× faster than the per-neuron form at E = 20, D = 20, N = 100, B = 200)."""
        mean, second = self.statistics(params["W"])                            # (E, D), (E, D, D)
        pairs = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(1)                 # x ⊗ x, (B, D²)
        out = x @ mean.T + 0.5 * self.eps * (pairs @ second.flatten(1).T)      # (B, E)
        return out.T.unsqueeze(-1)

    def ntk(self, W: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        r"""The neural tangent kernel of z at weights ``W`` (N, D) — or a stack (E, N, D) — between
        ``x1`` (n1, D) and ``x2`` (n2, D), in closed form: ∂z/∂w_i = φ'(w_i·x) x / N with
        φ'(h) = 1 + ε h, so

        .. math::
            K(x, x') = \frac{x\cdot x'}{N^2} \sum_i \phi'(w_i\cdot x)\,\phi'(w_i\cdot x')
            = \frac{x\cdot x'}{N}\Big(1 + \epsilon\,\bar w\cdot(x + x') + \epsilon^2\, x^\top M x'\Big).

        Shape (n1, n2), or (E, n1, n2). The kernel of f = α z is α² K (tested against per-example
        gradients in ``tests/test_lazy_rich.py``)."""
        mean, second = self.statistics(W)
        a1 = torch.matmul(x1, mean.unsqueeze(-1))                              # w̄·x, (…, n1, 1)
        a2 = torch.matmul(x2, mean.unsqueeze(-1)).transpose(-1, -2)            # (…, 1, n2)
        cross = torch.matmul(torch.matmul(x1, second), x2.T)                   # xᵀ M x', (…, n1, n2)
        return (x1 @ x2.T) * (1 + self.eps * (a1 + a2) + self.eps**2 * cross) / self.width
