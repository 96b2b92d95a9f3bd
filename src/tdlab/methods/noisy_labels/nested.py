"""Nested dropout on the penultimate features, and the choice of how many features to keep.

Chen, Shen, Hu, Wang, Wang & Suykens, "Compressing Features for Learning with Noisy Labels"
(TNNLS 2022; official code ``yingyichen-cyy/Nested-Co-teaching``, ``nested/train_resnet.py``):
a network's features h ∈ R^d feed a bias-free linear classifier. At every training step one
truncation k ∈ {0, …, d−1} is drawn for the whole batch,

.. math:: P(k) \\propto \\exp\\big(-((k + 1 - \\mu)/\\sigma)^2\\big)\\qquad\\text{(``GaussianDist``: no factor 1/2)},

and only the first k + 1 channels are kept (the rest are set to zero). The first channels are
trained at every step, later ones ever more rarely, so the features come out *ordered by
importance*. At test time the classifier reads the first K channels, z_K = W_{:, :K} h_{:K},
and K is chosen where a held-out split is classified best (``TestNested``: every K = 1..d,
ties broken towards the smaller K). Fewer channels leave less room to fit the wrong labels.

- :func:`truncation_distribution` — P(k) above;
- :class:`NestedNet` — features of any trunk, nested dropout in training and a fixed truncation
  (``keep``) in evaluation; :class:`NestedMLP`, its MLP case, stacks as batched matrix products;
  :func:`resnet18_trunk` the paper's CIFAR trunk;
- :func:`truncated_logits`, :func:`accuracy_by_truncation`, :func:`choose_truncation` — the
  logits and accuracies of every truncation K at once (a cumulative sum over the channels), and
  the official choice of K;
- :func:`holdout` — a validation split carved out of the training set (the official CIFAR setup
  keeps 10% of the training images for it);
- :func:`monitor` — at every evaluation of the loop, each member's K chosen on the validation
  split *with noisy labels* (the member's own noise rate) and its test accuracy at that K; for
  co-teaching pairs (members 2j, 2j+1) also the pair's averaged logits, as the official
  co-teaching evaluation and test scripts;
- :func:`truncation_curves` — accuracy against K of trained models (the figure's curves).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from tdlab.core import augment, data, models, noise
from tdlab.core.config import check_range
from tdlab.core.data import Dataset
from tdlab.core.recipes import Recipe
from tdlab.methods.noisy_labels import coteaching
from tdlab.core.monitors import chunked


def truncation_distribution(width: int, sigma: float, mu: float = 0.0) -> np.ndarray:
    """P(k) ∝ exp(−((k + 1 − μ)/σ)²) for k = 0..width−1, the official ``GaussianDist(mu, std, N)``
    (k + 1 channels are kept when k is drawn). σ = 10 for CIFAR-10, 100 for CIFAR-100 and Clothing1M."""
    check_range("width", width, 1)
    check_range("nested sigma", sigma, 0, low_open=True)
    kept = np.arange(1, width + 1, dtype=np.float64)
    weights = np.exp(-((kept - mu) / sigma) ** 2)
    return weights / weights.sum()


class NestedNet(nn.Module):
    """trunk(x) = features h ∈ R^width → bias-free Linear → logits, with nested dropout on h (Chen et
    al. 2022; the official ``NetFeat`` + ``NetClassifier``).

    - training, ``sigma > 0``: one k ~ :func:`truncation_distribution` per forward call (per
      batch, the same for every member of a stacked run), drawn from the model's own seeded
      generator (``mask_seed``), and only h[:k+1] reaches the classifier;
    - ``sigma = 0``: no nested dropout (the plain cross-entropy baseline of the paper);
    - ``dropout`` p > 0 (with ``sigma = 0``): plain dropout on h instead, each channel of each
      example zeroed with probability p and the rest scaled by 1/(1 − p), as the official
      ``F.dropout(feature, p=dropout)`` baseline (the control of nested dropout at a matched rate);
      the mask comes from a torch generator seeded with ``mask_seed``, one mask per member;
    - evaluation: the first ``keep`` channels (all of them when ``keep`` is ``None``).

    ``trunk`` is any module returning (B, width) features; stacked runs ``vmap`` it (batch norm
    then needs ``track_running_stats=False``). :class:`NestedMLP` is the fast MLP case.
    """

    def __init__(self, trunk: nn.Module, width: int, num_classes: int, sigma: float = 10.0, mu: float = 0.0,
                 mask_seed: int = 0, dropout: float = 0.0):
        super().__init__()
        check_range("width", width, 1)
        check_range("nested sigma", sigma, 0)
        check_range("dropout", dropout, 0, 1, high_open=True)
        if dropout and sigma:
            raise ValueError("plain dropout is the control of nested dropout: give sigma = 0 with dropout > 0")
        self.trunk = trunk
        self.classifier = nn.Linear(width, num_classes, bias=False)
        self.width, self.sigma, self.mu = width, float(sigma), float(mu)
        self.distribution = truncation_distribution(width, sigma, mu) if sigma > 0 else None
        self.rng = np.random.default_rng(mask_seed)
        self.dropout = float(dropout)
        self.dropout_generator = torch.Generator().manual_seed(mask_seed)
        self.keep: int | None = None          # evaluation: how many channels the classifier reads
        self.kept: int | None = None          # training: how many were kept at the last forward call

    def kept_channels(self) -> int:
        """How many channels the classifier reads now: a fresh draw k + 1 in training with nested
        dropout, else ``keep`` (all ``width`` when unset)."""
        if self.training and self.distribution is not None:
            self.kept = int(self.rng.choice(self.width, p=self.distribution)) + 1
            return self.kept
        keep = self.width if self.keep is None else int(self.keep)
        check_range("keep", keep, 1, self.width)
        return keep

    def features(self, x: torch.Tensor, keep: int | None = None) -> torch.Tensor:
        """The first ``keep`` (all) features h, shape (B, keep)."""
        return self.trunk(x)[:, :keep]

    def dropped(self, h: torch.Tensor) -> torch.Tensor:
        """h with plain dropout applied in training (``dropout`` > 0), else h itself."""
        if not (self.training and self.dropout):
            return h
        kept = torch.rand(h.shape, generator=self.dropout_generator) >= self.dropout
        return h * kept.to(device=h.device, dtype=h.dtype) / (1 - self.dropout)

    def forward(self, x):
        keep = self.kept_channels()
        return self.dropped(self.features(x, keep)) @ self.classifier.weight[:, :keep].T   # z = W_{:, :K} h_{:K}

    def features_stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """All features of E stacked networks (``params`` stacked to (E, ...)), x shared: (E, B, width)."""
        trunk = {name[len("trunk."):]: p for name, p in params.items() if name.startswith("trunk.")}
        return torch.vmap(lambda p: functional_call(self.trunk, p, (x,)), randomness="different")(trunk)


class NestedMLP(NestedNet):
    """:class:`NestedNet` with an MLP trunk: x → [Linear → ReLU] × depth = h ∈ R^width.

    Stacked members run as batched matrix products (``forward_stacked``, as
    :meth:`tdlab.core.models.MLP.forward_stacked`). Dropping the channels after the first ``keep`` is
    computed by not computing them: the last trunk layer and the classifier are sliced to
    ``keep`` rows/columns, which gives the same logits and gradients as multiplying h by the 0/1
    mask of the official code.
    """

    def __init__(self, in_features: int, num_classes: int, width: int = 128, depth: int = 2,
                 sigma: float = 10.0, mu: float = 0.0, mask_seed: int = 0, dropout: float = 0.0):
        check_range("depth", depth, 1)
        layers: list[nn.Module] = [nn.Flatten()]
        features = in_features
        for _ in range(depth):
            layers += [nn.Linear(features, width), nn.ReLU()]
            features = width
        super().__init__(nn.Sequential(*layers), width, num_classes, sigma, mu, mask_seed, dropout)

    def _last_linear(self) -> int:
        return max(i for i, layer in enumerate(self.trunk) if isinstance(layer, nn.Linear))

    def features(self, x: torch.Tensor, keep: int | None = None) -> torch.Tensor:
        keep = self.width if keep is None else keep
        last = self._last_linear()
        h = x
        for index, layer in enumerate(self.trunk):
            if index == last:
                h = nn.functional.linear(h, layer.weight[:keep], layer.bias[:keep])
            else:
                h = layer(h)
        return h

    def forward(self, x):
        return super().forward(x)

    def features_stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor, keep: int | None = None,
                         feature_major: bool = False) -> torch.Tensor:
        """The first ``keep`` features of E stacked networks, x shared: (E, B, keep), or (E, keep, B)
        with ``feature_major`` (the layout the layers compute in)."""
        keep = self.width if keep is None else keep
        members = next(iter(params.values())).shape[0]
        last = self._last_linear()
        h = x.flatten(1).t().expand(members, -1, -1)                # (E, features, B)
        for index, layer in enumerate(self.trunk):
            if isinstance(layer, nn.Flatten):
                continue
            if isinstance(layer, nn.Linear):
                weight, bias = params[f"trunk.{index}.weight"], params[f"trunk.{index}.bias"]
                if index == last:
                    weight, bias = weight[:, :keep], bias[:, :keep]
                h = torch.baddbmm(bias.unsqueeze(2), weight, h)     # hᵀ ← b + W hᵀ
            else:
                h = layer(h)                                         # ReLU, element-wise
        return h if feature_major else h.transpose(1, 2)

    def forward_stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """E networks at once, one truncation for all of them: ``(E, B, C)`` (what the loop trains)."""
        keep = self.kept_channels()
        h = self.dropped(self.features_stacked(params, x, keep, feature_major=True))  # (E, keep, B)
        return torch.bmm(params["classifier.weight"][:, :, :keep], h).transpose(1, 2)  # z = W_{:, :K} h_{:K}


def resnet18_trunk(in_channels: int = 3, width: int = 64) -> nn.Module:
    """The CIFAR ResNet-18 of :class:`tdlab.core.models.ResNet` up to its pooled features, 8·``width`` = 512 of
    them (the official ``NetFeat``), with batch norm on batch statistics only
    (``track_running_stats=False``, so that stacked members can be ``vmap``-ed; evaluation then
    normalises with the statistics of each evaluation chunk)."""
    net = models.ResNet((2, 2, 2, 2), num_classes=1, in_channels=in_channels, width=width)
    net.head = nn.Identity()
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            module.track_running_stats = False
            module.running_mean = module.running_var = module.num_batches_tracked = None
    return net


# ----------------------------------------------------------------- every truncation at once


def truncated_logits(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The logits of every truncation of one network: ``features`` (N, d), ``weight`` (C, d) → (C, N, d)
    whose [:, n, K−1] is z_K = Σ_{j<K} W_{:, j} h_j — a cumulative sum over the channels, class-major
    (on the CPU an argmax over a leading axis of few classes is far faster than over the last one)."""
    return (weight.unsqueeze(1) * features.unsqueeze(0)).cumsum(-1)


def accuracy_by_truncation(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accuracy of every truncation: ``logits`` (C, N, d) from :func:`truncated_logits`, ``labels`` (N,)
    → (d,), entry K−1 for K kept channels."""
    return (logits.argmax(0) == labels.unsqueeze(-1)).float().mean(0)


def choose_truncation(accuracy: torch.Tensor) -> torch.Tensor:
    """The K (number of kept channels, 1..d) with the best ``accuracy`` (..., d), ties broken
    towards the smaller K: the official ``argmax(acc − 1e−5·k)``."""
    index = torch.arange(accuracy.shape[-1], device=accuracy.device, dtype=accuracy.dtype)
    return (accuracy - 1e-5 * index).argmax(-1) + 1


# ----------------------------------------------------------------- the held-out split and the monitor


@dataclass
class Validation:
    """A held-out split: inputs and their clean labels (noisy labels are drawn per member)."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int

    def labels(self, kind: str | None, rate: float | None, seed: int) -> torch.Tensor:
        """The labels a member with this noise setting sees on the split: the clean ones without
        noise, else the same kind and rate of noise, drawn with the member's ``noise_seed``."""
        if kind is None or not rate:
            return self.y
        return noise.corrupt(self.y, kind, rate, self.num_classes, seed).labels


def holdout(data: Dataset, fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Validation]:
    """``data`` without a seeded ``fraction`` of its training examples, and those examples as a
    :class:`Validation` split (clean labels: ``data`` must not be corrupted yet)."""
    check_range("validation fraction", fraction, 0, 1, low_open=True, high_open=True)
    if data.has_noise:
        raise ValueError("hold out the validation split before corrupting the labels")
    order = torch.randperm(data.num_train, generator=torch.Generator().manual_seed(seed)).to(data.device)
    count = int(round(fraction * data.num_train))
    val, train = order[:count], order[count:]
    return (data.replace(x_train=data.x_train[train], y_train=data.y_train[train]),
            Validation(data.x_train[val], data.y_train[val], data.num_classes))


def _accuracies(template: NestedNet, params: dict[str, torch.Tensor], x: torch.Tensor,
                labels: torch.Tensor, pairs: bool) -> torch.Tensor:
    """Accuracy against K, (E, d) for every member, or (E/2, d) for the pairs' averaged logits."""
    features = chunked(lambda part: template.features_stacked(params, part), x, 1024, dim=1)   # (E, N, d)
    weight = params["classifier.weight"]                                   # (E, C, d)
    labels = labels.expand(features.shape[0], -1)
    out = []
    for m in range(0, features.shape[0], 2 if pairs else 1):             # one member (pair) at a time: memory
        logits = truncated_logits(features[m], weight[m])                  # (C, N, d)
        if pairs:                                                           # the pair's averaged logits
            logits = (logits + truncated_logits(features[m + 1], weight[m + 1])) / 2
        out.append(accuracy_by_truncation(logits, labels[m]))
    return torch.stack(out)


def monitor(template: NestedNet, validation: Validation | Callable[[], Validation], pairs: bool = False,
            clean_labels: bool = False, clean_too: bool = False):
    """A monitor: each member's truncation K chosen on ``validation`` with the labels the member
    would see there (its own noise kind, rate and seed: no clean label is used for the choice), and
    what it gives. Logs ``val``/``K`` (kept channels), ``val``/``acc`` (the validation accuracy
    at K, noisy labels), ``test_K``/``acc`` (test accuracy at K) and ``val_all``/``acc`` (the
    validation accuracy with all channels, noisy labels: what selects the step of a network read
    with all its features). With ``pairs`` (co-teaching: members 2j and 2j+1) also ``val_pair``/``K``,
    ``val_pair``/``acc`` and ``test_pair``/``acc``: K chosen for the pair's averaged logits, its
    validation and test accuracy there, and ``val_pair_all``/``acc``, ``test_pair_all``/``acc``, the
    pair's averaged logits with all channels; the same numbers for both members of a pair.
    The best-validation reading of the paper (the checkpoint of the best validation epoch) is
    :func:`at_best_validation` on these curves.
    ``template`` is any :class:`NestedNet` of the members' shape (only its layout is used);
    ``validation`` may be a function that makes the split (called once, when first needed).
    ``clean_labels``: choose on the split's clean labels instead (the official CIFAR setup, whose
    ``val/`` split is held out of the clean training set and only the rest corrupted).
    ``clean_too`` (with noisy choices): also every reading on the split's clean labels, logged under the
    same names with ``_clean`` appended to the validation split's name and to the test reading it selects
    (``val_clean``/``K``, ``val_clean``/``acc``, ``test_K_clean``/``acc``, ``val_all_clean``/``acc``; with
    ``pairs`` also ``val_pair_clean``/``K``, ``val_pair_clean``/``acc``, ``test_pair_clean``/``acc``,
    ``val_pair_all_clean``/``acc`` and ``test_pair_all_clean``/``acc``; ``test_pair_all`` needs no clean
    twin, the test accuracies are shared): one more pass over the validation split."""
    cache: dict = {}
    CLEAN = (None, None, 0)                     # the key of the split's clean labels

    def split() -> Validation:
        if "split" not in cache:
            cache["split"] = validation if isinstance(validation, Validation) else validation()
        return cache["split"]

    def labels(key: tuple) -> torch.Tensor:
        if key not in cache:
            cache[key] = split().labels(*key).to(split().x.device)
        return cache[key]

    def noisy_key(settings: dict) -> tuple:
        return CLEAN if clean_labels else \
            (settings.get("noise"), settings.get("noise_rate"), settings.get("noise_seed", 0))

    def readings(params, y_val: torch.Tensor, test: torch.Tensor, test_pair: torch.Tensor | None,
                 suffix: str) -> dict:
        """Every reading chosen on the validation labels ``y_val`` (E, n), named with ``suffix``."""
        members = y_val.shape[0]
        val = _accuracies(template, params, split().x, y_val, pairs=False)              # (E, d)
        chosen = choose_truncation(val)                                                  # (E,)
        rows = torch.arange(members)
        out = {(f"val{suffix}", "K"): chosen.float(), (f"val{suffix}", "acc"): val[rows, chosen - 1],
               (f"test_K{suffix}", "acc"): test[rows, chosen - 1], (f"val_all{suffix}", "acc"): val[:, -1]}
        if test_pair is not None:
            val_pair = _accuracies(template, params, split().x, y_val, pairs=True)    # (E/2, d)
            chosen_pair = choose_truncation(val_pair)
            pair_rows = torch.arange(members // 2)
            out[(f"val_pair{suffix}", "K")] = chosen_pair.float().repeat_interleave(2)
            out[(f"val_pair{suffix}", "acc")] = val_pair[pair_rows, chosen_pair - 1].repeat_interleave(2)
            out[(f"test_pair{suffix}", "acc")] = test_pair[pair_rows, chosen_pair - 1].repeat_interleave(2)
            out[(f"val_pair_all{suffix}", "acc")] = val_pair[:, -1].repeat_interleave(2)
            out[(f"test_pair_all{suffix}", "acc")] = test_pair[:, -1].repeat_interleave(2)
        return out

    @torch.no_grad()
    def measure(ev) -> dict:
        members = ev.members
        if pairs and members % 2:
            raise ValueError(f"pairs of members need an even number of members, got {members}")
        params = ev.stacked_parameters()
        y_test = ev.targets["test"]
        test = _accuracies(template, params, ev.data.x_test, y_test, pairs=False)
        test_pair = _accuracies(template, params, ev.data.x_test, y_test, pairs=True) if pairs else None
        out = readings(params, torch.stack([labels(noisy_key(s)) for s in ev.settings]), test, test_pair, "")
        if clean_too and not clean_labels:
            clean = readings(params, labels(CLEAN).expand(members, -1), test, test_pair, "_clean")
            clean.pop(("test_pair_all_clean", "acc"), None)        # the same numbers as test_pair_all
            out.update(clean)
        return out

    return measure


def at_best_validation(history, val: tuple[str, str], test: tuple[str, str], member: int = 0) -> float:
    """``test`` (split, metric) of one member at the evaluation where ``val`` (split, metric) peaks,
    ties broken towards the earliest step: the official checkpoint of the best validation epoch."""
    return history.at_step(*test, history.peak_step(*val, member), member)


def truncation_curves(networks: list[NestedNet], x: torch.Tensor, y: torch.Tensor, pairs: bool = False) -> np.ndarray:
    """Accuracy against the number of kept channels K = 1..d of trained models on (x, y): shape
    (len(models), d), or (len(models)/2, d) for the pairs' averaged logits."""
    params = {name: torch.stack([dict(m.named_parameters())[name].detach() for m in networks])
              for name, _ in networks[0].named_parameters()}
    with torch.no_grad():
        return _accuracies(networks[0], params, x, y, pairs).cpu().numpy()


# ----------------------------------------------------------------- reading a sweep of pairs


def mean_at_best(history, reading: tuple[tuple[str, str], tuple[str, str]], members: list[int]) -> float:
    """A reading ((validation split, metric), (test split, metric)) of each member at its own best validation
    step (:func:`at_best_validation`), averaged over ``members`` (a pair's reading is logged on both of its
    members, so for pairs it is the average over the pairs)."""
    if not members:
        raise ValueError("no member matches: nothing to average")
    return float(np.mean([at_best_validation(history, *reading, m) for m in members]))


def K_at_best(history, val: str, members: list[int]) -> list[int]:
    """The K each member chose on the ``val`` reading at the step where that reading's accuracy peaks."""
    return [int(history.at_step(val, "K", history.peak_step(val, "acc", m), m)) for m in members]


def within_pairs(K: list[int]) -> float:
    """How far the K of the two networks of a pair (members 2j, 2j + 1 of ``K``) disagree: the larger over
    the smaller, the median over the pairs."""
    if len(K) % 2 or not K:
        raise ValueError(f"pairs need an even, non-zero number of K, got {len(K)}")
    return float(np.median([max(a, b) / min(a, b) for a, b in zip(K[0::2], K[1::2])]))


# ----------------------------------------------------------------- the paper's CIFAR-10 recipe


def paper_recipe(seed: int = 0, train: Callable[[], Dataset] | None = None, sigma: float = 10.0,
                 forget_rate: float = 0.2) -> Recipe:
    """The official CIFAR-10 configuration (``yingyichen-cyy/Nested-Co-teaching``; the README's sym-20% checkpoints),
    for a GPU: the CIFAR ResNet-18 up to its 512 pooled features (:func:`resnet18_trunk`, the official ``NetFeat``)
    with nested dropout of σ = 10 (``--nested``) and a bias-free classifier; stage 1 SGD (lr 0.1, momentum 0.9,
    weight decay 5·10⁻⁴, batch 320) for 350 epochs with a linear warm-up over 6000 iterations and the learning rate
    ×0.1 at epochs 200 and 300, random crop (padding 4) and flip (``nested/train_resnet.py``); then 100 epochs of
    co-teaching (:class:`~tdlab.methods.noisy_labels.coteaching.CoTeaching`, τ = 0.2 constant: ``nGradual`` 0 in
    the README's commands) at 10⁻³, ×0.1 at epoch 50 (``co_teaching_resnet/main.py``). The test set is read every
    5 epochs (the official code: every epoch). ``train`` makes the training split (default: 90% of CIFAR-10's
    training set, standardized, the other 10% held out by :func:`holdout` with ``seed``, as the official ``val/``).

    Departures (the chapter's Setup): the two stages are one continued run with one optimizer, not two checkpoints
    reloaded; batch norm uses each batch's statistics throughout (no frozen BN in stage 2)."""
    epoch = 45_000 // 320                                  # steps per epoch at batch 320

    def official(step):  # warm-up over 6000 iterations, ×0.1 at epochs 200, 300 of 350; then 1e-3, ×0.1 at 50 of 100
        e = step // epoch
        if e < 350:
            return min(1.0, (step + 1) / 6000) * 0.1 ** ((e >= 200) + (e >= 300))
        return 0.01 * 0.1 ** (e >= 400)

    def nested_resnet18(sigma=sigma, dropout=0.0):
        return NestedNet(resnet18_trunk(), 512, 10, sigma=sigma, dropout=dropout, mask_seed=seed)

    if train is None:
        def train():
            return holdout(data.standardize(data.load("cifar10")), 0.1, seed=seed)[0]

    return Recipe(train, nested_resnet18,
                  dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=320,
                       steps=450 * epoch, eval_every=5 * epoch, schedule_name=official,
                       batch_hook=augment.crop_flip(padding=4, seed=seed),
                       loss=coteaching.CoTeaching(forget_rate, start=350 / 450, ramp_epochs=0)))
