"""Co-teaching: two networks, each trained on the examples its peer finds easy.

Han et al., "Co-teaching: Robust Training of Deep Neural Networks with Extremely Noisy Labels"
(NeurIPS 2018), used by Chen et al. (TNNLS 2022) to fine-tune two nested-dropout networks
(official code ``yingyichen-cyy/Nested-Co-teaching``, ``co_teaching_resnet/loss.py``:
``SampleSelection`` and ``Classification``; the forget-rate schedule in ``main.py``).

In a stacked run members 2j and 2j+1 are a pair. At every step each member ranks the batch by
its own per-example cross-entropy ℓ (detached), keeps the R = ⌊(1 − τ_t)·B⌋ smallest — the
examples most likely to be labelled correctly, since networks fit clean labels first — and its
*peer* takes a gradient step on them:

.. math::
    S_m = \\operatorname{argsort}(\\ell^{(m)})_{1..R},\\qquad
    \\mathcal{L}^{(2j)} = \\tfrac1R \\textstyle\\sum_{i\\in S_{2j+1}} \\ell^{(2j)}_i,\\qquad
    \\mathcal{L}^{(2j+1)} = \\tfrac1R \\textstyle\\sum_{i\\in S_{2j}} \\ell^{(2j+1)}_i .

The forget rate τ_t follows the official ``rateSchedule``: over the first ``ramp_epochs`` epochs
of co-teaching it is ``linspace(0, τ, ramp_epochs)``, then τ (the README's CIFAR commands use
``nGradual = 0``: τ from the start; the script's default is 5). With τ = 0 every example is kept
and the loss is plain cross-entropy — the control in the same batched run.

The paper fine-tunes two networks trained beforehand; here both stages are one run: before
``start`` (a fraction of the steps) the loss is plain cross-entropy for every member (stage 1),
after it co-teaching (stage 2), so the nested-only control and the co-teaching pairs share
their first stage exactly. Differences from the official code, stated where they matter:
the official code splits each batch into two halves, one per network, and ranks the examples
with a second, evaluation-mode forward pass at the validation-chosen truncation K; here both
members of a pair rank the same whole batch (as Han et al.) with the logits the step computed
(at this step's nested truncation).

``selection="random"`` is the deciding control of the small-loss selection: each member trains on a
random (1 − τ_t)·B of the batch instead (a seeded draw, independent of the losses), so the same
share of every batch is left out, but not the examples the peer finds hard.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tdlab.core.config import check_range
from tdlab.core.losses import Loss, cross_entropy


def forget_rate(epoch: int, rate: float, ramp_epochs: int) -> float:
    """τ at co-teaching epoch ``epoch`` (0-based): the official ``rateSchedule`` — ``ones·τ`` with its
    first ``ramp_epochs`` entries replaced by ``linspace(0, τ, ramp_epochs)``."""
    if epoch >= ramp_epochs:
        return rate
    return rate * epoch / (ramp_epochs - 1) if ramp_epochs > 1 else 0.0


def remembered(rate: float, batch: int) -> int:
    """How many examples are kept: ``int((1 − τ)·B)``, as the official ``SampleSelection``."""
    return int((1 - rate) * batch)


class CoTeaching(Loss):
    """Co-teaching over pairs of stacked members (2j, 2j+1); see the module docstring.

    - ``forget_rate`` τ (per member; both members of a pair must share it): the fraction of each
      batch dropped as probably mislabelled, once the ramp is over;
    - ``start``: the fraction of the run's steps trained with plain cross-entropy first (stage 1);
    - ``ramp_epochs``: epochs of co-teaching over which τ_t ramps linearly from 0 (official ``nGradual``);
    - ``selection``: ``"small_loss"`` (co-teaching) or ``"random"`` (the control: a random drop of the
      same share, drawn from a generator seeded with ``seed``).

    ``self.rates`` holds the current τ_t of every member (``None`` in stage 1), ``self.kept`` the last batch's selection
    of every member, (E, B) booleans (``None`` during stage 1).
    """

    name = "coteaching"
    hyperparameters = ("forget_rate",)
    settings = ("start", "ramp_epochs", "selection")
    SELECTIONS = ("small_loss", "random")

    def __init__(self, forget_rate: float = 0.2, start: float = 0.5, ramp_epochs: int = 5,
                 selection: str = "small_loss", seed: int = 0):
        for value in torch.as_tensor(forget_rate, dtype=torch.float64).flatten().tolist():
            check_range("co-teaching forget rate", value, 0, 1, high_open=True)
        check_range("co-teaching start", start, 0, 1, high_open=True)
        check_range("co-teaching ramp_epochs", ramp_epochs, 0)
        if selection not in self.SELECTIONS:
            raise ValueError(f"co-teaching selection must be one of {self.SELECTIONS}, got {selection!r}")
        self.forget_rate, self.start, self.ramp_epochs = forget_rate, start, int(ramp_epochs)
        self.selection, self.seed = selection, int(seed)
        self.generator: torch.Generator | None = None
        self.rates: list[float] | None = None
        self.members = 2
        self.kept: torch.Tensor | None = None

    def setup(self, num_examples, num_classes, members=1, device=None):
        if members % 2:
            raise ValueError(f"co-teaching trains pairs of members (2j, 2j+1): got {members} members")
        rates = torch.as_tensor(self.forget_rate, dtype=torch.float64).expand(members).tolist()
        if rates[0::2] != rates[1::2]:
            raise ValueError(f"both members of a co-teaching pair need the same forget rate, got {rates}")
        self.rates, self.kept, self.members = None, None, members
        self.generator = None                  # the random drop's draws start again from ``seed`` (made when first used)

    def at_step(self, step, steps, epoch_length):
        first = int(round(self.start * steps))              # the last step of stage 1
        if step <= first:
            self.rates = None
            return
        epoch = (step - first - 1) // epoch_length
        taus = torch.as_tensor(self.forget_rate, dtype=torch.float64).expand(self.members).tolist()
        self.rates = [forget_rate(epoch, tau, self.ramp_epochs) for tau in taus]

    def __call__(self, logits, targets, index=None):
        if logits.dim() != 3 or logits.shape[0] % 2:
            raise ValueError("co-teaching needs the stacked logits of pairs of members, shape (2P, B, C)")
        if self.rates is None:                                                    # stage 1
            self.kept = None
            return cross_entropy(logits, targets)
        members, batch = logits.shape[:2]
        if len(self.rates) != members:
            raise ValueError(f"co-teaching was set up for {len(self.rates)} members, got logits of {members}")
        keep = [remembered(rate, batch) for rate in self.rates]
        if min(keep) == batch:                                                    # τ_t = 0 everywhere: plain CE
            self.kept = None
            return cross_entropy(logits, targets)
        if not torch.equal(targets[0::2], targets[1::2]):
            raise ValueError("both members of a co-teaching pair must train on the same labels (noise rate and seed)")
        per_example = F.cross_entropy(logits.transpose(1, 2), targets.long(), reduction="none")   # ℓ, (E, B)
        if self.selection == "random":                                            # the control: a random drop
            if self.generator is None:                                            # the run's first random drop
                self.generator = torch.Generator().manual_seed(self.seed)
            order = torch.rand((members, batch), generator=self.generator).argsort(dim=-1).to(logits.device)
        else:
            order = per_example.detach().argsort(dim=-1, stable=True)             # smallest loss first
        ranks = torch.empty_like(order).scatter_(-1, order, torch.arange(batch, device=order.device).expand_as(order))
        count = torch.tensor(keep, device=logits.device)
        selected = ranks < count.unsqueeze(-1)                                    # S_m, (E, B)
        self.kept = selected
        peer = selected.view(members // 2, 2, batch).flip(1).reshape(members, batch)   # each member: its peer's S
        return (per_example * peer).sum(-1) / peer.sum(-1)
