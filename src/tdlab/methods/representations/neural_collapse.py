"""Neural collapse: the geometry of the last-layer features and classifier in the terminal phase.

Papyan, Han & Donoho, "Prevalence of neural collapse during the terminal phase of deep learning
training" (PNAS 2020): once a network classifies its training set perfectly, further training
drives (NC1) the features of each class onto their class mean, (NC2) the centred class means and
the classifier rows towards a simplex equiangular tight frame (ETF), (NC3) the classifier towards
the class means (self-duality). The metrics here are those of Zhu et al.'s official code
(``tding1/Neural-Collapse``, ``validate_NC.py``; "A Geometric Analysis of Neural Collapse with
Unconstrained Features", NeurIPS 2021), on K classes, N training features h_i ∈ R^d, class means
μ_k, the global mean μ_G (the mean of all N features) and the last layer's weight W ∈ R^{K×d}:

- :func:`nc1` — tr(Σ_W Σ_B^†)/K, Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ,
  Σ_B = (1/K) Σ_k (μ_k − μ_G)(μ_k − μ_G)ᵀ (``compute_Sigma_W``, ``compute_Sigma_B``);
- :func:`etf_distance` — ‖MMᵀ/‖MMᵀ‖_F − (I_K − 11ᵀ/K)/√(K−1)‖_F (``compute_ETF``): NC2 of the
  classifier with M = W, of the features with M = Hᵀ, H = [μ_1 − μ_G, …, μ_K − μ_G];
- :func:`nc3` — ‖WH/‖WH‖_F − (I_K − 11ᵀ/K)/√(K−1)‖_F (``compute_W_H_relation``);
- Papyan's own forms of NC2, for cross-checks: :func:`equinorm` (std/mean of the norms) and
  :func:`equiangularity` (std of the pairwise cosines), and :func:`max_angle`
  (mean |cos + 1/(K−1)|);
- :func:`mean_cosine` — the mean pairwise cosine of some rows, for *minority collapse* (Fang, He,
  Long & Su, PNAS 2021): with imbalanced classes the minority classes' classifier rows close up
  (their cosines rise from the ETF's −1/(K−1) towards 1).

All of them are 0 on exactly collapsed features with an ETF classifier that is dual to the means
(``tests/test_neural_collapse.py``). :func:`metrics` computes every one of them for one network;
:class:`CollapseMLP` is an MLP whose ``features(x)`` is the input to its last layer (a ReLU trunk
and a head of linear or ReLU layers, the deep linear head of Dang et al. 2023);
:func:`monitor` measures the metrics of every member at every evaluation of the training loop.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from tdlab.core import data as datasets
from tdlab.core.config import check_choice, check_range
from tdlab.core.recipes import Recipe
from tdlab.core.models import _activation
from tdlab.core.monitors import Evaluation, Monitor, Values

HEADS = ("relu", "linear")


# ----------------------------------------------------------------- the metrics of one network


def _as64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().to(torch.float64).cpu()


def class_means(features, labels, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The class means μ_k (K, d) and the global mean μ_G (d,) — the mean of all N features, so
    that with imbalanced classes the larger classes weigh more (``compute_info``)."""
    h, y = _as64(features), torch.as_tensor(labels).cpu().long()
    counts = torch.bincount(y, minlength=num_classes).to(torch.float64)
    if bool((counts == 0).any()):
        raise ValueError(f"every class needs at least one example; counts {counts.long().tolist()}")
    sums = torch.zeros(num_classes, h.shape[1], dtype=torch.float64).index_add_(0, y, h)
    return sums / counts[:, None], h.mean(0)


def within_class_covariance(features, labels, num_classes: int) -> torch.Tensor:
    """Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ, (d, d)."""
    h, y = _as64(features), torch.as_tensor(labels).cpu().long()
    means, _ = class_means(h, y, num_classes)
    centred = h - means[y]                                       # h_i − μ_{y_i}
    return centred.T @ centred / h.shape[0]


def between_class_covariance(features, labels, num_classes: int) -> torch.Tensor:
    """Σ_B = (1/K) Σ_k (μ_k − μ_G)(μ_k − μ_G)ᵀ, (d, d)."""
    means, mu_g = class_means(features, labels, num_classes)
    centred = means - mu_g                                       # rows μ_k − μ_G
    return centred.T @ centred / num_classes


def nc1(features, labels, num_classes: int) -> float:
    """NC1 = tr(Σ_W Σ_B^†)/K (Papyan et al. 2020, Fig. 6; Zhu et al.'s ``collapse_metric``), with the
    Moore–Penrose pseudo-inverse: the within-class spread in units of the between-class spread."""
    sigma_w = within_class_covariance(features, labels, num_classes)
    sigma_b = between_class_covariance(features, labels, num_classes)
    return float(torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, hermitian=True)) / num_classes)


def simplex_etf_gram(num_classes: int) -> torch.Tensor:
    """The Gram matrix of a simplex ETF normalized to Frobenius norm 1: (I_K − 11ᵀ/K)/√(K−1)."""
    k = num_classes
    return (torch.eye(k, dtype=torch.float64) - torch.ones(k, k, dtype=torch.float64) / k) / math.sqrt(k - 1)


def etf_distance(rows) -> float:
    """‖MMᵀ/‖MMᵀ‖_F − (I_K − 11ᵀ/K)/√(K−1)‖_F for the K rows of M (Zhu et al.'s ``compute_ETF``, NC2):
    0 when the rows have equal norms and pairwise cosines −1/(K−1)."""
    m = _as64(rows)
    gram = m @ m.T                                               # MMᵀ
    return float(torch.linalg.matrix_norm(gram / torch.linalg.matrix_norm(gram) - simplex_etf_gram(m.shape[0])))


def nc3(weight, features, labels, num_classes: int) -> float:
    """NC3 = ‖WH/‖WH‖_F − (I_K − 11ᵀ/K)/√(K−1)‖_F, H = [μ_1 − μ_G, …, μ_K − μ_G] (d, K) (Zhu et al.'s
    ``compute_W_H_relation``): 0 when the classifier is dual to the centred class means and both
    form a simplex ETF."""
    means, mu_g = class_means(features, labels, num_classes)
    wh = _as64(weight) @ (means - mu_g).T                        # W H, (K, K)
    return float(torch.linalg.matrix_norm(wh / torch.linalg.matrix_norm(wh) - simplex_etf_gram(num_classes)))


def _norms_and_cosines(rows) -> tuple[torch.Tensor, torch.Tensor]:
    m = _as64(rows)
    norms = m.norm(dim=1)
    unit = m / norms[:, None]
    k = m.shape[0]
    off = ~torch.eye(k, dtype=torch.bool)
    return norms, (unit @ unit.T)[off]                           # the K(K−1) off-diagonal cosines


def equinorm(rows) -> float:
    """Papyan et al.'s equinorm: std/mean of the row norms (Fig. 2), 0 for equal norms."""
    norms, _ = _norms_and_cosines(rows)
    return float(norms.std(unbiased=False) / norms.mean())


def equiangularity(rows) -> float:
    """Papyan et al.'s equiangularity: the std of the pairwise cosines (Fig. 3), 0 for equal angles."""
    return float(_norms_and_cosines(rows)[1].std(unbiased=False))


def max_angle(rows) -> float:
    """Papyan et al.'s maximal-angle measure: the mean of |cos(θ_jk) + 1/(K−1)| (Fig. 4), 0 for a simplex."""
    _, cosines = _norms_and_cosines(rows)
    return float((cosines + 1 / (_as64(rows).shape[0] - 1)).abs().mean())


def mean_cosine(rows, which: Sequence[int] | None = None) -> float:
    """The mean cosine between the pairs of rows ``which`` (all rows by default): −1/(K−1) for a
    simplex ETF of K rows, rising towards 1 as the rows close up (minority collapse, Fang et al. 2021)."""
    m = _as64(rows)
    if which is not None:
        m = m[list(which)]
    if m.shape[0] < 2:
        raise ValueError("a mean cosine needs at least two rows")
    return float(_norms_and_cosines(m)[1].mean())


def metrics(features, labels, weight, num_classes: int, minority: Sequence[int] = ()) -> dict[str, float]:
    """Every collapse number of one network: ``nc1``, ``nc2_w`` (classifier to ETF), ``nc2_h`` (class
    means to ETF), ``nc3``, Papyan's ``equinorm_h/w``, ``equiangular_h/w``, and with ``minority``
    classes the mean cosine of their classifier rows (``minority_cos_w``) and centred means
    (``minority_cos_h``)."""
    means, mu_g = class_means(features, labels, num_classes)
    centred = means - mu_g                                       # Hᵀ, (K, d)
    out = {"nc1": nc1(features, labels, num_classes), "nc2_w": etf_distance(weight), "nc2_h": etf_distance(centred),
           "nc3": nc3(weight, features, labels, num_classes),
           "equinorm_w": equinorm(weight), "equinorm_h": equinorm(centred),
           "equiangular_w": equiangularity(weight), "equiangular_h": equiangularity(centred)}
    if len(minority) >= 2:
        out["minority_cos_w"] = mean_cosine(weight, minority)
        out["minority_cos_h"] = mean_cosine(centred, minority)
    return out


# ----------------------------------------------------------------- a network that shows its features


class CollapseMLP(nn.Module):
    """x → [Linear → BatchNorm → ReLU] × ``depth`` (the trunk) → [Linear → head activation] ×
    ``head_depth`` (the head) → Linear (the classifier W), every hidden layer ``width`` wide — the
    MLP of Zhu et al.'s code (``models/mlp.py``: Linear, BatchNorm1d, ReLU blocks, then ``fc``) with a
    head added. ``head="linear"`` makes the head's layers linear (the deep linear head of Dang et
    al. 2023 on a nonlinear trunk), ``head="relu"`` ReLU layers. :meth:`features` is the input to the
    classifier — what Zhu et al.'s forward pre-hook on ``model.fc`` captures.

    The batch norm keeps no running statistics (so that E copies stack, :mod:`tdlab.core.engine`): it
    normalizes with the statistics of the batch it sees — in training a mini-batch; in evaluation
    the chunk the loop evaluates (at least 512 examples, 32 768 / E for E stacked members: the whole
    of this book's small sets), and in :func:`monitor` the whole training set at once.
    :meth:`forward_stacked` runs E copies as batched matrix products.
    """

    def __init__(self, in_features: int, num_classes: int, width: int = 128, depth: int = 2,
                 head_depth: int = 1, head: str = "relu", eps: float = 1e-5):
        super().__init__()
        check_choice("head", head, HEADS)
        check_range("width", width, 1)
        check_range("depth", depth, 1)
        check_range("head_depth", head_depth, 0)
        layers: list[nn.Module] = [nn.Flatten()]
        size = in_features
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.BatchNorm1d(width, eps=eps, track_running_stats=False), nn.ReLU()]
            size = width
        for _ in range(head_depth):
            layers += [nn.Linear(size, width), _activation("relu" if head == "relu" else "identity")]
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
        self.head, self.eps = head, eps
        self.trunk_end = 1 + 3 * depth           # the layers up to the trunk's output (the head's input)

    @property
    def classifier_name(self) -> str:
        """The parameter name of the classifier's weight W (K, d)."""
        return f"net.{len(self.net) - 1}.weight"

    def forward(self, x):
        return self.net(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features h(x) (B, width): the input to the last layer."""
        return self.net[:-1](x)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's output (B, width): the input to the head (equal to :meth:`features` when
        ``head_depth = 0``). NC1 here against NC1 of :meth:`features` separates the trunk's collapse from
        the head's own (Dang et al. 2023: a deep linear head collapses what it receives)."""
        return self.net[:self.trunk_end](x)

    def forward_stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """E copies at once: ``params[name]`` stacked to (E, ...), ``x`` shared → logits (E, B, C)."""
        return self.stacked(params, x, len(self.net))

    def stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor, upto: int) -> torch.Tensor:
        """The output (E, B, ·) of the first ``upto`` layers of E stacked copies; ``upto = len(net) − 1``
        gives the penultimate features."""
        members = next(iter(params.values())).shape[0]
        h = x.flatten(1).expand(members, -1, -1)                 # (E, B, d_in)
        for index, layer in enumerate(list(self.net)[:upto]):
            if isinstance(layer, nn.Flatten):
                continue
            if isinstance(layer, nn.Linear):
                h = torch.baddbmm(params[f"net.{index}.bias"].unsqueeze(1), h,
                                  params[f"net.{index}.weight"].transpose(1, 2))      # b + h Wᵀ
            elif isinstance(layer, nn.BatchNorm1d):              # batch statistics, per member and unit
                mean = h.mean(1, keepdim=True)
                var = h.var(1, unbiased=False, keepdim=True)
                h = (h - mean) / torch.sqrt(var + self.eps) * params[f"net.{index}.weight"].unsqueeze(1) \
                    + params[f"net.{index}.bias"].unsqueeze(1)
            else:
                h = layer(h)                                     # an element-wise activation
        return h


def stacked_features(model: CollapseMLP, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The penultimate features (E, B, d) of E stacked copies of ``model`` (``params`` stacked to (E, ...))."""
    return model.stacked(params, x, len(model.net) - 1)


def monitor(model: CollapseMLP | Callable[[], CollapseMLP], minority: Sequence[int] = ()) -> Monitor:
    """A monitor of the training loop: at every evaluation, every member's penultimate features on the
    whole training set (in eval mode, from its current parameters) and its classifier W, measured with
    :func:`metrics` against the labels the member is trained on; logged as split ``collapse``,
    metrics ``nc1``, ``nc2_w``, ``nc2_h``, ``nc3``, ... (``minority``: the minority classes, for
    ``minority_cos_w`` / ``minority_cos_h``), and ``nc1_trunk``: NC1 of the trunk's output, the head's
    input (:meth:`CollapseMLP.trunk`). ``model`` is any module of the runs' shape, or a
    factory of one (called at every evaluation, so a factory whose shape is a knob stays in step)."""

    @torch.no_grad()
    def measure(ev: Evaluation) -> dict[tuple[str, str], Values]:
        template = model if isinstance(model, nn.Module) else model()
        params = ev.stacked_parameters()
        x, labels = ev.data.x_train, ev.targets["train"]
        feats = stacked_features(template, params, x)             # (E, N, d): one chunk, the batch norm's statistics
        k = ev.logits["train"].shape[-1]
        weight = params[template.classifier_name]
        rows = [metrics(feats[m], labels[m], weight[m], k, minority) for m in range(ev.members)]
        if template.trunk_end == len(template.net) - 1:           # no head: the trunk's output is the features
            for row in rows:
                row["nc1_trunk"] = row["nc1"]
        else:
            trunk = template.stacked(params, x, template.trunk_end)   # (E, N, width): the head's input
            for m, row in enumerate(rows):
                row["nc1_trunk"] = nc1(trunk[m], labels[m], k)
        return {("collapse", name): [row[name] for row in rows] for name in rows[0]}

    return measure


# ----------------------------------------------------------------- data and reading a run


def imbalanced(data, per_class: int, imbalance: float = 1.0, minority: Sequence[int] = (), seed: int = 0):
    """A training subset with ``per_class`` examples of every majority class and
    round(per_class / ``imbalance``) of every class in ``minority`` (Fang et al.'s ratio R = n_A/n_B),
    drawn with ``seed``; the test set kept. ``imbalance = 1`` is a balanced subset."""
    check_range("per_class", per_class, 1)
    check_range("imbalance", imbalance, 1)
    y = data.y_train.cpu()
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for k in range(data.num_classes):
        count = max(1, int(round(per_class / imbalance))) if k in set(minority) else per_class
        pool = torch.nonzero(y == k).flatten()
        if count > len(pool):
            raise ValueError(f"class {k} has {len(pool)} training examples, asked for {count}")
        chosen.append(pool[torch.randperm(len(pool), generator=gen)[:count]])
    order = torch.cat(chosen)
    order = order[torch.randperm(len(order), generator=gen)].to(data.device)
    return data.replace(x_train=data.x_train[order], y_train=data.y_train[order],
                        info={**data.info, "per_class": per_class, "imbalance": imbalance,
                              "minority": list(minority)})


def terminal_phase(history, member: int = 0, level: float = 1.0,
                   names: Sequence[str] = ("nc1", "nc2_w", "nc2_h", "nc3")) -> dict[str, float]:
    """The numbers of the terminal phase of one run: the first evaluated step with training accuracy ≥
    ``level`` (TPT start, NaN if never), and for NC1, NC2 (W and H) and NC3 (or the monitor's metrics
    ``names``, e.g. ``nc1_trunk``) their value there, at the end, and the factor by which they fell in
    between (value at TPT start / final value)."""
    start = history.first_step("train", "acc", level, member)
    out = {"terminal phase starts at step": start}
    for name in names:
        final = history.final("collapse", name, member)
        at = history.at_step("collapse", name, int(start), member) if np.isfinite(start) else math.nan
        out[f"{name} at TPT start"], out[f"{name} final"] = at, final
        out[f"{name} fall factor"] = at / final if np.isfinite(start) else math.nan
    return out


class CollapseFactory:
    """A model factory whose shape is a knob of the recipe: ``head`` (``"relu"`` or ``"linear"``),
    ``depth`` and ``head_depth``. Not per-member knobs of the engine (they shape the model), so
    members that differ in them train in separate engine calls; :meth:`derive` sets them just
    before each call builds its models (as :class:`tdlab.core.recipes.ScaledInit` does for the scale)."""

    def __init__(self, in_features: int, num_classes: int, width: int = 128, depth: int = 2, head_depth: int = 1,
                 head: str = "relu"):
        self.in_features, self.num_classes, self.width = in_features, num_classes, width
        self.depth, self.head_depth, self.head = depth, head_depth, head

    def __call__(self) -> CollapseMLP:
        return CollapseMLP(self.in_features, self.num_classes, self.width, self.depth, self.head_depth, self.head)

    def derive(self, head: str = "relu", depth: int = 2, head_depth: int = 1) -> dict:
        self.head, self.depth, self.head_depth = head, int(depth), int(head_depth)
        return {}


def recipe(data: Callable, in_features: int, num_classes: int = 10, width: int = 128, minority: Sequence[int] = (),
           head: str = "relu", depth: int = 2, head_depth: int = 1, **settings) -> Recipe:
    """A :class:`~tdlab.core.recipes.Recipe` for neural-collapse runs: ``data`` (a function whose parameters,
    such as the imbalance ratio, are knobs), a :class:`CollapseMLP` whose ``head``, ``depth`` and
    ``head_depth`` are knobs, and :func:`monitor` (with the ``minority`` classes) at every evaluation."""
    factory = CollapseFactory(in_features, num_classes, width, depth, head_depth, head)

    def shape(head: str = head, depth: int = depth, head_depth: int = head_depth) -> dict:
        return factory.derive(head, depth, head_depth)

    return Recipe(data, factory, {"monitors": [monitor(factory, minority)], **settings}, derive=(shape,))


def with_log10(history, split: str = "collapse", names: Sequence[str] = ("nc1", "nc2_w", "nc2_h", "nc3")):
    """A copy of ``history`` with ``log10_<name>`` added for each metric ``name`` of ``split`` (the
    collapse numbers span decades; an explorer draws them on this scale)."""
    from tdlab.core.history import History

    extra = [{**r, "metric": f"log10_{r['metric']}", "value": math.log10(r["value"]) if r["value"] > 0 else math.nan}
             for r in history.records if r["split"] == split and r["metric"] in names]
    return History(history.records + extra, [dict(k) for k in history.knobs], list(history.diverged_at),
                   history.seconds, list(history.models))


# ----------------------------------------------------------------- the paper's own setup


PAPER_DECAYS, PAPER_DECAY = [0.0, 5e-4, 1e-3, 2e-3], 5e-4     # the weight decays of the paper-scale sweep; its default


def paper_recipe(seed: int = 0, minority: Sequence[int] = (5, 6, 7, 8, 9)):
    """The paper-scale run of the neural-collapse chapter (book/06_representations/01_neural_collapse):
    CIFAR-10 (5000 examples per class; ``imbalance`` R keeps 5000/R of each ``minority`` class), Zhu et
    al.'s MLP (6 hidden layers of 2048 with batch norm, no hidden head layer), SGD (lr 0.05, momentum 0.9,
    batch 128) for 200 epochs with the learning rate × 0.2 every 40 epochs."""
    epoch = 50_000 // 128
    cifar = lambda: datasets.standardize(datasets.load("cifar10"))   # noqa: E731

    def subset(imbalance: float = 1.0):
        return imbalanced(cifar(), 5000, imbalance, minority, seed=seed)

    return recipe(subset, 3 * 32 * 32, 10, width=2048, minority=minority, depth=6, head_depth=0,
                  optimizer="sgd", lr=0.05, momentum=0.9, batch_size=128, steps=200 * epoch,
                  eval_every=5 * epoch, schedule_name=lambda step: 0.2 ** (step // (40 * epoch)))
