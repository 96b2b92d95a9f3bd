"""Random teachers are good teachers (Sarnthein, Bachmann, Anagnostidis & Hofmann, ICML 2023).

A teacher network is initialised at random and **frozen**; a student of the same architecture is
trained, without labels and without augmentation, to match the teacher's softmax outputs on the
training inputs. The labels are used only afterwards, to read the quality of the frozen features of
teacher and student with a linear probe and a k-nearest-neighbour classifier.

As the official code does it (``safelix/dinopl`` @ cd39e78):

- the model is an encoder followed by a DINO head (``dinopl/core.py``, ``DINOHead``): an MLP
  (GELU) and an *L2 bottleneck* (``dinopl/modules/l2bottleneck.py``, configuration
  ``-/lb/fn/wn/l/-``): a linear layer with bias, the feature L2-normalised, then a linear layer
  without bias whose weight rows are L2-normalised — the outputs are cosines in [−1, 1]
  (:class:`DinoHead`, :class:`DistillNet`);
- the loss is the cross-entropy between the teacher's softmax(z_T/τ_T) and the student's
  log-softmax(z_S/τ_S), averaged over the batch (``DINO.multicrop_loss_clf`` with one crop and
  ``loss_pairing = same``; no centring) — :class:`DistillationLoss`, :func:`distillation_loss`;
- the teacher is never updated and runs in eval mode; with no augmentation its outputs on a
  training example never change, so they are computed once (:func:`teacher_logits`) and the loss
  looks them up by the example's index — the same numbers as running the teacher at every step;
- the student starts at the teacher (``s_init = teacher``) or near it (``configuration.py``,
  ``init_student_teacher``): ``interpolated`` θ_S = (1 − α)·θ_T + α·θ_R and ``neighborhood``
  θ_S = θ_T + ε·θ_R with θ_R an independent random initialisation (:func:`near_teacher`); the
  engine builds it through the model factory :class:`NearTeacher`;
- the evaluation (``dinopl/probing.py``) standardises the embeddings with the training set's mean
  and standard deviation, then a k-NN classifier (k = 20, Euclidean distance, majority vote;
  :func:`knn_accuracy`) and a linear probe (``nn.Linear`` trained with AdamW at its default
  learning rate for 10 epochs; :func:`linear_probe`).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from tdlab.core import data as datasets
from tdlab.core.config import check_choice, check_range
from tdlab.core.data import Dataset
from tdlab.core.losses import Loss
from tdlab.core.monitors import Evaluation, Values, chunked

# ----------------------------------------------------------------- the model: encoder + DINO head


class L2Bottleneck(nn.Module):
    """The official head's last part, ``-/lb/fn/wn/l/-``: u = W₁h + b₁, û = u/‖u‖, z = V̂û with
    V̂ the weight V whose rows are L2-normalised (so every output is a cosine, |z_k| ≤ 1)."""

    def __init__(self, in_dim: int, bottleneck: int, out_dim: int):
        super().__init__()
        self.lin1 = nn.Linear(in_dim, bottleneck)
        self.lin2 = nn.Linear(bottleneck, out_dim, bias=False)
        for layer in (self.lin1, self.lin2):         # DINO's head init: truncated normal, std 0.02, zero bias
            nn.init.trunc_normal_(layer.weight, std=0.02)
        nn.init.zeros_(self.lin1.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        u = F.normalize(self.lin1(h), dim=-1)                       # feature normalisation ("fn")
        return u @ F.normalize(self.lin2.weight, dim=-1).transpose(0, 1)   # weight-normalised rows ("wn")


class DinoHead(nn.Module):
    """DINOHead: an MLP of ``hidden`` GELU layers, then the :class:`L2Bottleneck` to ``out_dim``."""

    def __init__(self, embed_dim: int, out_dim: int, hidden: tuple[int, ...] = (256,), bottleneck: int = 64):
        super().__init__()
        layers, width = [], embed_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.GELU()]
            width = h
        self.mlp = nn.Sequential(*layers)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last = L2Bottleneck(width, bottleneck, out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.last(self.mlp(h))


class CNNEncoder(nn.Module):
    """A small 1-D CNN encoder for MNIST-1D (the shape of :class:`tdlab.core.models.CNN1d` without its
    linear layer): three conv layers (kernel 5, stride 2 on the last two), ReLU, flattened."""

    def __init__(self, length: int = 40, channels: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2), nn.ReLU(),
            nn.Conv1d(channels, channels, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(channels, channels, 5, stride=2, padding=2), nn.ReLU(), nn.Flatten(-2))
        self.embed_dim = channels * math.ceil(math.ceil(length / 2) / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(-2) if x.dim() == 2 else x)


class MLPEncoder(nn.Module):
    """An MLP encoder: ``depth`` Linear → ReLU layers of ``width`` units on flattened inputs."""

    def __init__(self, in_features: int, width: int = 256, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(depth):
            layers += [nn.Linear(in_features if i == 0 else width, width), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.embed_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResNetEncoder(nn.Module):
    """The CIFAR ResNet-18 of :class:`tdlab.core.models.ResNet` (3×3 stem, batch norm) without its linear
    layer: the 512 globally average-pooled features (the paper's ``resnet18`` with ``tiny_input``)."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        from tdlab.core.models import ResNet
        self.net = ResNet((2, 2, 2, 2), 10, in_channels)
        self.net.head = nn.Identity()
        self.embed_dim = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DistillNet(nn.Module):
    """Encoder + DINO head: ``forward`` gives the head's outputs z (what the loss sees),
    :meth:`features` the encoder's embedding (what the probes see; the official ``enc``)."""

    def __init__(self, encoder: nn.Module, out_dim: int = 64, hidden: tuple[int, ...] = (256,),
                 bottleneck: int = 64):
        super().__init__()
        self.encoder = encoder
        self.head = DinoHead(encoder.embed_dim, out_dim, hidden, bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def cnn_net(length: int = 40, channels: int = 32, out_dim: int = 64, hidden: tuple[int, ...] = (256,),
            bottleneck: int = 64) -> Callable[[], DistillNet]:
    """A factory of :class:`DistillNet` with a :class:`CNNEncoder`."""
    return lambda: DistillNet(CNNEncoder(length, channels), out_dim, hidden, bottleneck)


def resnet18_net(out_dim: int = 65536, hidden: tuple[int, ...] = (2048, 2048),
                 bottleneck: int = 256) -> Callable[[], DistillNet]:
    """The paper's CIFAR-10 network (``cifar10_distillation_v2.json``): ResNet-18 and the DINO head
    [2048, 2048] → 256 → 65 536. For a GPU; its batch norm keeps the engine from stacking members."""
    return lambda: DistillNet(ResNetEncoder(), out_dim, hidden, bottleneck)


def mlp_net(in_features: int, width: int = 256, depth: int = 2, out_dim: int = 64,
            hidden: tuple[int, ...] = (256,), bottleneck: int = 64) -> Callable[[], DistillNet]:
    """A factory of :class:`DistillNet` with an :class:`MLPEncoder`."""
    return lambda: DistillNet(MLPEncoder(in_features, width, depth), out_dim, hidden, bottleneck)


# ----------------------------------------------------------------- the student's initialisation


@contextlib.contextmanager
def seeded(seed: int):
    """Draw with ``torch.manual_seed(seed)`` inside the block and leave the global generator as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def near_teacher(teacher: nn.Module, random: nn.Module, distance: float, mode: str = "interpolated",
                 variance_preserving: bool = False) -> nn.Module:
    """A copy of ``random`` moved near ``teacher`` (the official ``init_student_teacher``):

    - ``interpolated``: θ_S = (1 − α)·θ_T + α·θ_R, α = ``distance`` — so ‖θ_S − θ_T‖ = α‖θ_R − θ_T‖:
      α = 0 is the teacher itself, α = 1 an independent random initialisation;
    - ``neighborhood``: θ_S = θ_T + ε·θ_R, ε = ``distance`` — so ‖θ_S − θ_T‖ = ε‖θ_R‖.

    ``variance_preserving`` divides by √(2α² − 2α + 1) (interpolated) or √(ε² + 1) (neighborhood),
    the official correction that keeps the variance of independent θ_T, θ_R.
    """
    check_choice("mode", mode, ("interpolated", "neighborhood"))
    check_range("distance", distance, 0)
    student = copy.deepcopy(random)
    with torch.no_grad():
        for p_s, p_t, p_r in zip(student.parameters(), teacher.parameters(), random.parameters()):
            if mode == "interpolated":
                p_s.copy_((1 - distance) * p_t + distance * p_r)
                scale = math.sqrt(2 * distance**2 - 2 * distance + 1)
            else:
                p_s.copy_(p_t + distance * p_r)
                scale = math.sqrt(distance**2 + 1)
            if variance_preserving:
                p_s.div_(scale)
    return student


def parameter_distance(a: nn.Module, b: nn.Module) -> float:
    """‖θ_a − θ_b‖₂ over all parameters."""
    return math.sqrt(sum(float((p - q).detach().double().pow(2).sum()) for p, q in zip(a.parameters(), b.parameters())))


class NearTeacher:
    """A model factory for the engine: each call returns a student initialised near one fixed teacher.

    The teacher is ``build()`` drawn with ``teacher_seed``; the random point θ_R is ``build()`` drawn
    with the global generator, which the engine seeds with the member's ``seed`` — so members that
    differ in their seed start at different random points at the same distance from the same
    teacher. ``init_distance`` is not one of the engine's per-member knobs (it shapes the model before
    training): as with :class:`tdlab.core.recipes.ScaledInit`, the recipe's derivation :meth:`derive`
    sets it before each engine call, and members with different distances train in separate calls.
    """

    def __init__(self, build: Callable[[], nn.Module], teacher_seed: int, init_distance: float = 0.0,
                 mode: str = "interpolated"):
        self.build, self.teacher_seed, self.init_distance, self.mode = build, teacher_seed, init_distance, mode

    def teacher(self) -> nn.Module:
        """The frozen random teacher (the same module, bit for bit, at every call)."""
        with seeded(self.teacher_seed):
            teacher = self.build()
        teacher.requires_grad_(False)
        return teacher.eval()

    def __call__(self) -> nn.Module:
        random = self.build()
        return near_teacher(self.teacher(), random, self.init_distance, self.mode).requires_grad_(True).train()

    def derive(self, init_distance: float | None = None) -> dict:
        """The recipe's derivation: remember the distance of the engine call about to be made."""
        if init_distance is not None:
            self.init_distance = float(init_distance)
        return {}


# ----------------------------------------------------------------- the loss


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      student_temperature=1.0, teacher_temperature=1.0) -> torch.Tensor:
    """CE(p_T, p_S) = −Σ_k softmax(z_T/τ_T)_k · log softmax(z_S/τ_S)_k, averaged over the examples
    (the official ``multicrop_loss_clf`` with ``loss = CE``, one crop). Logits ``(..., B, K)``;
    temperatures floats or per-member tensors of shape ``(E,)``; returns shape ``(...)``."""
    def per_member(t):
        t = torch.as_tensor(t, dtype=student_logits.dtype, device=student_logits.device)
        return t.reshape(t.shape + (1,) * 2) if t.dim() else t

    targets = torch.softmax(teacher_logits / per_member(teacher_temperature), dim=-1)
    log_predictions = torch.log_softmax(student_logits / per_member(student_temperature), dim=-1)
    return -(targets * log_predictions).sum(-1).mean(-1)


class DistillationLoss(Loss):
    """The random-teacher objective as an engine loss: the teacher's outputs on every training
    example, ``teacher_logits`` (N, K) from :func:`teacher_logits`, are looked up by the batch's
    dataset ``index``; the labels the engine passes are ignored (no labels are used).

    ``student_temperature`` τ_S and ``teacher_temperature`` τ_T may differ per member.
    """

    name = "random_teacher"
    hyperparameters = ("student_temperature", "teacher_temperature")

    def __init__(self, teacher_logits: torch.Tensor | Callable[[], torch.Tensor] | None = None,
                 student_temperature: float = 0.1, teacher_temperature: float = 0.04):
        self.teacher_logits = teacher_logits
        self.student_temperature, self.teacher_temperature = student_temperature, teacher_temperature

    @property
    def teacher_logits(self) -> torch.Tensor | None:
        """The teacher's outputs on every training example; given as a function, it is called once, when first
        read (a paper-scale recipe computes them when it loads its data, not when it is built)."""
        if callable(self._teacher_logits) and not isinstance(self._teacher_logits, torch.Tensor):
            self._teacher_logits = self._teacher_logits()
        return self._teacher_logits

    @teacher_logits.setter
    def teacher_logits(self, value) -> None:
        self._teacher_logits = value

    def __call__(self, logits, targets=None, index=None):
        if self.teacher_logits is None or index is None:
            raise ValueError("the random-teacher loss needs the teacher's logits and the batch's dataset index")
        return distillation_loss(logits, self.teacher_logits.index_select(0, index),
                                 self.student_temperature, self.teacher_temperature)


@torch.no_grad()
def teacher_logits(teacher: nn.Module, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The frozen teacher's outputs z_T on ``x`` (eval mode, no gradient), shape (N, K)."""
    teacher.eval()
    return torch.cat([teacher(x[i:i + chunk]) for i in range(0, len(x), chunk)])


# ----------------------------------------------------------------- evaluating frozen features


def standardize(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both feature sets standardised with the training set's mean and standard deviation (ddof 1;
    a constant feature keeps σ = 1, as ``dinopl/probing.normalize_data`` and scikit-learn do)."""
    mean, std = train.mean(0), train.std(0)
    std = torch.where(std < 10 * torch.finfo(std.dtype).eps, torch.ones_like(std), std)
    return (train - mean) / std, (test - mean) / std


@torch.no_grad()
def knn_accuracy(train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor,
                 k: int = 20, normalize: bool = True) -> float:
    """The k-NN accuracy of frozen features (``dinopl/probing.KNNAnalysis``): the k training points
    nearest in Euclidean distance vote, the most frequent label wins (ties: the smallest label, as
    ``torch.mode``). ``normalize`` standardises the features first (the official ``normalize_probe``)."""
    check_range("k", k, 1)
    if normalize:
        train, test = standardize(train, test)
    correct = 0
    for i in range(0, len(test), 1024):
        distances = torch.cdist(test[i:i + 1024], train)                     # (b, N)
        nearest = distances.topk(min(k, len(train)), largest=False).indices  # (b, k)
        votes = F.one_hot(y_train[nearest], int(y_train.max()) + 1).sum(1)   # (b, C)
        correct += int((votes.argmax(-1) == y_test[i:i + 1024]).sum())       # argmax: first of the ties
    return correct / len(test)


def linear_probe(train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor,
                 epochs: int = 10, batch_size: int = 256, lr: float = 1e-3, seed: int = 0,
                 normalize: bool = True) -> float:
    """The test accuracy of a linear classifier on frozen features (``dinopl/probing.LinearAnalysis``):
    ``nn.Linear`` at PyTorch's default initialisation, trained with AdamW (lr 10⁻³, its default weight
    decay 0.01) on the cross-entropy for ``epochs`` epochs of shuffled batches."""
    check_range("epochs", epochs, 1)
    if normalize:
        train, test = standardize(train, test)
    classes = int(max(y_train.max(), y_test.max())) + 1
    with seeded(seed):
        probe = nn.Linear(train.shape[1], classes)
        order = [torch.randperm(len(train)) for _ in range(epochs)]
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr)
    with torch.enable_grad():
        for permutation in order:
            for i in range(0, len(train), batch_size):
                index = permutation[i:i + batch_size]
                loss = F.cross_entropy(probe(train[index]), y_train[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    with torch.no_grad():
        return float((probe(test).argmax(-1) == y_test).float().mean())


@torch.no_grad()
def features(model: DistillNet, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The encoder's embedding of ``x`` in eval mode, without gradient."""
    was = model.training
    model.eval()
    out = torch.cat([model.features(x[i:i + chunk]) for i in range(0, len(x), chunk)])
    model.train(was)
    return out


@dataclass
class Probes:
    """The two readings of one network's frozen features on the test set."""

    knn: float
    probe: float


def probe_model(model: DistillNet, data: Dataset, k: int = 20, epochs: int = 10, seed: int = 0) -> Probes:
    """k-NN and linear-probe test accuracy of ``model``'s embedding (standardised), trained on the
    training set's true labels."""
    train, test = features(model, data.x_train), features(model, data.x_test)
    y_train = data.y_train_true if data.y_train_true is not None else data.y_train
    return Probes(knn_accuracy(train, y_train, test, data.y_test, k),
                  linear_probe(train, y_train, test, data.y_test, epochs=epochs, seed=seed))


def knn_monitor(model: DistillNet, k: int = 20,
                chunk: int = 4096) -> Callable[[Evaluation], dict[tuple[str, str], Values]]:
    """A monitor: every member's k-NN test accuracy (``test_knn``/``acc``) from its current encoder,
    and the distillation loss on the whole training set (``train``/``distill``) from the logits the
    loop already computed. ``model`` is a module of the members' shape (its parameters are replaced
    by each member's). An encoder with batch norm keeps running statistics the loop does not hand
    to monitors, so for it the k-NN is left out (read the trained models with :func:`probe_model`)."""
    has_buffers = any(True for _ in model.encoder.buffers())
    model.eval()

    @torch.no_grad()
    def monitor(ev: Evaluation) -> dict[tuple[str, str], Values]:
        loss = ev.loss(ev.logits["train"], None, torch.arange(ev.logits["train"].shape[1]))
        if has_buffers:
            return {("train", "distill"): loss}
        data = ev.data
        y_train = data.y_train_true if data.y_train_true is not None else data.y_train
        knn = []
        for member in range(ev.members):
            encoder = {name[len("encoder."):]: p for name, p in ev.parameters(member).items()
                       if name.startswith("encoder.")}
            embed = lambda x: functional_call(model.encoder, encoder, (x,))  # noqa: E731
            train, test = chunked(embed, data.x_train, chunk), chunked(embed, data.x_test, chunk)
            knn.append(knn_accuracy(train, y_train, test, data.y_test, k))
        return {("test_knn", "acc"): knn, ("train", "distill"): loss}

    return monitor



# ----------------------------------------------------------------- the recipe


def recipe(data: Dataset | Callable[[], Dataset], build: Callable[[], DistillNet], teacher_seed: int,
           student_temperature: float = 0.1, teacher_temperature: float = 0.04, knn_k: int = 20,
           mode: str = "interpolated", **settings):
    """A :class:`~tdlab.core.recipes.Recipe` that distils the random teacher ``build()`` (drawn with
    ``teacher_seed``) into students at a distance ``init_distance`` from it (a knob; members with
    different distances train in separate engine calls, members that differ in ``seed`` — the
    random point the student is moved towards — in one). The loss is :class:`DistillationLoss` on the
    teacher's outputs, the monitor :func:`knn_monitor`. ``recipe.model.teacher()`` is the teacher."""
    from tdlab.core.recipes import Recipe

    factory = NearTeacher(build, teacher_seed, mode=mode)
    if callable(data):          # loaded when the recipe first needs its data, the teacher's outputs with it
        made = functools.cache(data)
        loss = DistillationLoss(lambda: teacher_logits(factory.teacher(), made().x_train), student_temperature,
                                teacher_temperature)

        def dataset() -> Dataset:
            loss.teacher_logits            # computed on the data as loaded, before a run moves anything
            return made()
    else:
        dataset = data
        loss = DistillationLoss(teacher_logits(factory.teacher(), dataset.x_train), student_temperature,
                                teacher_temperature)

    def init(init_distance: float = 0.0) -> dict:
        return factory.derive(init_distance)

    return Recipe(dataset, factory, {"loss": loss, "monitors": [knn_monitor(build(), knn_k)], **settings},
                  derive=(init,))


# ----------------------------------------------------------------- the paper's own setup


def paper_recipe(teacher_seed: int, data_seed: int = 0):
    """The paper's CIFAR-10 run (Sarnthein et al., ICML 2023; safelix/dinopl's configuration): a ResNet-18 encoder
    with the DINO head [2048, 2048] → 256 → 65 536, student and teacher temperature 1, AdamW (lr 10⁻³, no weight
    decay), batch 256, 100 epochs (the random-teachers chapter, book/06_representations/02_random_teachers). Building
    it loads nothing: CIFAR-10 and the teacher's outputs on it are made when the recipe first needs its data."""
    epoch = 50_000 // 256
    return recipe(lambda: datasets.standardize(datasets.load("cifar10")), resnet18_net(), teacher_seed,
                  student_temperature=1.0, teacher_temperature=1.0, optimizer="adamw", lr=1e-3, weight_decay=0.0,
                  batch_size=256, steps=100 * epoch, eval_every=5 * epoch, data_seed=data_seed)
