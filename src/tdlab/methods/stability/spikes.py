"""Gradient spikes: single gradient entries far above Adam's running estimate of their size.

Huang et al. (SPAM, ICLR 2025; arXiv 2501.06842) find that during language-model training some
gradient entries are, for one step, hundreds or thousands of times larger than usual, and that
Adam's moments carry such a spike for many steps after it. Their *gradient spike score* is
offline: |g| at one step over the mean of |g| across the recorded training steps, a spike above 50;
their optimizer clips online, where g² > θ·v (θ = 5000, v Adam's raw second moment,
:class:`tdlab.methods.stability.spam.SPAM`).

Here the spike measure is the ratio of each entry's squared gradient to Adam's *bias-corrected*
second moment before the step,

.. math::
    r_i = \\frac{g_i^2}{\\hat v_i},\\qquad \\hat v_i = \\frac{v_i}{1 - \\beta_2^{n}},

n the updates v holds since it was last zeroed — g² against Adam's own running mean of g², so
that r ≈ 1 for a typical entry at any point of a run. Its root, the *online score*
√r = |g|/√v̂, is |g| over a causal root-mean-square of the past gradients (an EMA since the last
reset, without the step itself) — not the paper's offline score; we apply the paper's threshold of
50 to it, r > 50² = 2500 (the default ``threshold``). Entries are compared only once v holds
``min_updates`` = 20 updates (SPAM's own wait, ``grad_accu_steps``): against one or two earlier gradients, an entry that happened
to be near 0 gives ratios of 10⁶ and more that are noise of the estimate, not spikes (in our pilots
with a small character-level Transformer such ratios crowded into the first few steps: an observation
not recorded and not rerun).

- :class:`SpikeLog` — the observer a :class:`tdlab.methods.stability.spam.SPAM` calls for every parameter at every
  step: spikes per step, the largest ratio, entries SPAM clipped, spikes per parameter tensor and each
  tensor's largest ratio over the run (so that a tensor with no spike still shows how close it came);
  and, per entry, the running sum and maximum of |g| over every step it saw, from which
  :meth:`SpikeLog.offline_scores` gives each tensor's largest *offline* score — the paper's kind,

  .. math::
      \\mathrm{GSS}_i = \\max_t \\frac{|g_{i,t}|}{\\frac{1}{T}\\sum_{s=1}^{T} |g_{i,s}|},

  |g| over the mean |g| of the steps recorded (an entry whose gradient was 0 throughout scores 0), in two
  windows: the whole run, and the steps after the first ``min_updates`` (at least 1; the online score's wait; the
  first gradients of an untrained network are far above its later ones, and the whole run's score can
  be set by step 1 alone). An entry whose gradient is non-zero on only k of the T steps scores at least
  T/k whatever its sizes (a token-embedding row of a rare character), so the offline score is comparable
  across tensors only where every entry gets a gradient at every step.
- :class:`FlatSpikeLog` — the same numbers for the E runs a :class:`tdlab.methods.stability.spam.FlatSPAM` steps
  together, computed on the flat ``(E, P)`` gradient and v at once, one SpikeLog per run.
- :class:`SpikeTracker` — one SpikeLog per run trained (in member order), and
  :meth:`SpikeTracker.monitor`, which logs the numbers of the runs being trained at each evaluation.

Adam is watched the same way: SPAM with resets and clipping off (``delta_t=0, threshold=0``) is
Adam (the tests check it), and its observer sees Adam's own v.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

SCORE_THRESHOLD = 50.0          # the paper's threshold of its (offline) spike score, |g| / mean|g| > 50
RATIO_THRESHOLD = SCORE_THRESHOLD ** 2   # that threshold applied to our online score √r = |g|/√v̂: r = g²/v̂ > 2500
MIN_UPDATES = 20                # SPAM's grad_accu_steps: v̂ of fewer updates is too noisy to compare with


def spike_ratio(grad: torch.Tensor, exp_avg_sq: torch.Tensor, updates: int, beta2: float) -> torch.Tensor:
    """r = g² / v̂ per entry, v̂ = v / (1 − β₂ⁿ) Adam's bias-corrected second moment from n updates;
    0 where v̂ = 0 and g = 0, inf where only v̂ = 0 (an entry whose gradient was always 0 until now)."""
    if updates < 1:
        raise ValueError("the spike ratio needs a second moment with at least one update")
    v_hat = exp_avg_sq / (1 - beta2 ** updates)
    g2 = grad.square()
    return torch.where(g2 == 0, torch.zeros_like(g2), g2 / v_hat)


@dataclass
class SpikeLog:
    """What one optimizer saw, step by step: spikes (r > ``threshold``), the largest r, entries clipped.

    ``counts[k-1]``, ``max_ratio[k-1]`` and ``clipped[k-1]`` are the numbers of step k (all parameters);
    ``per_tensor[i]`` the spikes of the i-th parameter over the run and ``per_tensor_max[i]`` its largest
    ratio r over the watched steps (absent while that is 0; its root is the tensor's largest online score).
    A non-zero gradient that meets v = 0 (an entry whose gradient was exactly 0 until now: the embedding of
    a character not yet seen) has no ratio; it is counted apart, in ``first_seen`` — under Adam once per
    entry, under SPAM's clip, which sets such a gradient to 0 and so leaves v at 0, at every step until a
    reset.
    """

    threshold: float = RATIO_THRESHOLD
    min_updates: int = MIN_UPDATES
    counts: list[int] = field(default_factory=list)
    max_ratio: list[float] = field(default_factory=list)
    clipped: list[int] = field(default_factory=list)
    first_seen: list[int] = field(default_factory=list)
    per_tensor: dict[int, int] = field(default_factory=dict)
    per_tensor_max: dict[int, float] = field(default_factory=dict)
    # the offline score's running numbers per tensor, row 0 over every step, row 1 after the wait (step > min_updates)
    abs_sum: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)   # (2, n) Σ_t |g_t| (float64)
    abs_max: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)   # (2, n) max_t |g_t|
    abs_steps: dict[int, list[int]] = field(default_factory=dict)                # [T, T after the wait]
    abs_max_step: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)  # (2, n) the step of each max
    reported: int = 0                                # steps already reported by a monitor
    _step: list = field(default_factory=lambda: [0, 0.0, 0, 0], repr=False)

    def __call__(self, index: int, grad: torch.Tensor, exp_avg_sq: torch.Tensor, updates: int, beta2: float,
                 clipped: int = 0) -> None:
        self._step[2] += clipped
        self._add_abs(index, grad.detach().abs())           # the offline score's sums: from step 1
        if updates < max(1, self.min_updates):
            return
        ratio = spike_ratio(grad, exp_avg_sq, updates, beta2)
        finite = torch.isfinite(ratio)
        self._step[3] += int((~finite).sum())
        ratio = torch.where(finite, ratio, torch.zeros_like(ratio))
        count = int((ratio > self.threshold).sum())
        self._step[0] += count
        if count:
            self.per_tensor[index] = self.per_tensor.get(index, 0) + count
        top = float(ratio.max())
        self._step[1] = max(self._step[1], top)
        self._tensor_max(index, top)

    def _add_abs(self, index: int, size: torch.Tensor) -> None:
        if index not in self.abs_sum:
            self.abs_sum[index] = torch.zeros((2, *size.shape), dtype=torch.float64, device=size.device)
            self.abs_max[index] = torch.zeros((2, *size.shape), dtype=size.dtype, device=size.device)
            self.abs_steps[index] = [0, 0]
            self.abs_max_step[index] = torch.zeros((2, *size.shape), dtype=torch.long, device=size.device)
        rows = 2 if self.steps + 1 > max(1, self.min_updates) else 1   # this is step k = steps + 1: past the wait?
        self.abs_sum[index][:rows] += size                     # Σ_t |g_t|
        self.abs_max_step[index][:rows][size > self.abs_max[index][:rows]] = self.steps + 1
        torch.maximum(self.abs_max[index][:rows], size, out=self.abs_max[index][:rows])   # max_t |g_t|
        for row in range(rows):
            self.abs_steps[index][row] += 1

    def _offline_score(self, index: int, row: int) -> torch.Tensor | None:
        """Each entry's max_t |g_t| / ((1/T) Σ_t |g_t|) in tensor ``index`` over window ``row`` (0 where its
        |g| was 0 throughout); None where that window holds no step."""
        steps = self.abs_steps[index][row]
        if steps == 0:
            return None
        mean = self.abs_sum[index][row] / steps                                # (1/T) Σ_t |g_t|
        return torch.where(mean > 0, self.abs_max[index][row].double() / mean, torch.zeros_like(mean))

    def offline_scores(self, after_wait: bool = False) -> dict[int, float]:
        """Per parameter tensor, its largest offline score max_t |g_t| / ((1/T) Σ_t |g_t|) over its entries
        (the paper's gradient spike score at the window's worst step; 0 for a tensor whose gradient was 0):
        over every step, or with ``after_wait`` over the steps after the first ``min_updates``."""
        found = {}
        for index in self.abs_sum:
            score = self._offline_score(index, int(after_wait))
            found[index] = float(score.max()) if score is not None and score.numel() else 0.0
        return found

    def offline_worst_step(self, indices, after_wait: bool = False) -> int:
        """The step at which the entry with the largest offline score in the tensors ``indices`` had its
        largest |g| (0 if none scored above 0)."""
        row, best, step = int(after_wait), 0.0, 0
        for index in (int(i) for i in indices):
            score = self._offline_score(index, row) if index in self.abs_sum else None
            if score is None or not score.numel():
                continue
            top = int(score.argmax())
            if float(score.flatten()[top]) > best:
                best, step = float(score.flatten()[top]), int(self.abs_max_step[index][row].flatten()[top])
        return step

    def tensor_offline_largest(self, indices, after_wait: bool = False) -> float:
        """The largest offline score (:meth:`offline_scores`) over the parameter tensors ``indices`` (0 if none)."""
        scores = self.offline_scores(after_wait)
        return float(max((scores.get(int(i), 0.0) for i in indices), default=0.0))

    def _tensor_max(self, index: int, top: float) -> None:
        if top > self.per_tensor_max.get(index, 0.0):
            self.per_tensor_max[index] = top

    def end_step(self, k: int) -> None:
        self.record(*self._step)
        self._step[:] = [0, 0.0, 0, 0]

    def record(self, count: int, largest: float, clipped: int, unseen: int) -> None:
        """Append one step's numbers: spikes, the largest r, entries clipped, non-zero g with v = 0."""
        self.counts.append(count)
        self.max_ratio.append(largest)
        self.clipped.append(clipped)
        self.first_seen.append(unseen)

    @property
    def steps(self) -> int:
        return len(self.counts)

    def total(self, start: int = 0, stop: int | None = None) -> int:
        """Spikes in steps ``start + 1 .. stop`` (all steps by default)."""
        return int(sum(self.counts[start:stop]))

    def largest(self, start: int = 0, stop: int | None = None) -> float:
        """The largest ratio r in steps ``start + 1 .. stop``."""
        window = self.max_ratio[start:stop]
        return float(max(window)) if window else math.nan

    def tensor_largest(self, indices) -> float:
        """The largest ratio r over the run in the parameter tensors ``indices`` (0 if they never had a ratio
        above 0); its root is their largest online score √r."""
        return float(max((self.per_tensor_max.get(int(i), 0.0) for i in indices), default=0.0))

    def spike_steps(self) -> np.ndarray:
        """The steps (1-based) with at least one spike."""
        return np.flatnonzero(np.asarray(self.counts) > 0) + 1


class FlatSpikeLog:
    """The observer of a :class:`tdlab.methods.stability.spam.FlatSPAM`: for E members stepped together, the numbers each
    member's :class:`SpikeLog` would get from :class:`tdlab.methods.stability.spam.SPAM` one at a time, computed on the
    flat ``(E, P)`` gradient and v at once — the tensors are the ``layout``'s slices of a row
    (``name -> (start, stop, shape)``, in the order of the model's parameters, which ``per_tensor`` counts
    and ``per_tensor_max`` takes the largest ratio of). The offline score's running numbers are two
    ``(2, E, P)`` buffers (every step; after the wait); each member's log holds views of its slices.
    """

    def __init__(self, logs: list[SpikeLog], layout: dict[str, tuple[int, int, tuple[int, ...]]]):
        self.logs = logs
        spans = sorted(((start, stop) for start, stop, _ in layout.values()))
        sizes = torch.tensor([stop - start for start, stop in spans])
        self.tensor_of = torch.repeat_interleave(torch.arange(len(spans)), sizes)    # (P,) tensor index per entry
        self.spans = spans
        self.abs_sum: torch.Tensor | None = None        # (2, E, P) Σ_t |g_t|, made at the first step (its device)
        self.abs_max: torch.Tensor | None = None        # (2, E, P) max_t |g_t|
        self.abs_max_step: torch.Tensor | None = None   # (2, E, P) the step of each max
        self.abs_steps = [0, 0]                         # steps summed: every one, after the wait
        self.threshold = {log.threshold for log in logs}
        self.min_updates = {max(1, log.min_updates) for log in logs}
        if len(self.threshold) != 1 or len(self.min_updates) != 1:
            raise ValueError("the members' spike logs must share a threshold and min_updates")
        (self.threshold,), (self.min_updates,) = self.threshold, self.min_updates
        self._step: torch.Tensor | None = None

    def __call__(self, grad: torch.Tensor, exp_avg_sq: torch.Tensor, updates: torch.Tensor, beta2: torch.Tensor,
                 clipped: torch.Tensor) -> None:
        """One step: ``grad`` (E, P) before clipping, ``exp_avg_sq`` v before the update, ``updates`` (E,),
        ``beta2`` (E, 1), ``clipped`` (E,) — as :meth:`SpikeLog.__call__` sees them, for every tensor at once."""
        size = grad.detach().abs()
        if self.abs_sum is None:
            self.abs_sum = torch.zeros((2, *size.shape), dtype=torch.float64, device=size.device)
            self.abs_max = torch.zeros((2, *size.shape), dtype=size.dtype, device=size.device)
            self.abs_max_step = torch.zeros((2, *size.shape), dtype=torch.long, device=size.device)
            for e, log in enumerate(self.logs):            # each log sees its slices, tensor by tensor
                for index, (start, stop) in enumerate(self.spans):
                    log.abs_sum[index] = self.abs_sum[:, e, start:stop]
                    log.abs_max[index] = self.abs_max[:, e, start:stop]
                    log.abs_max_step[index] = self.abs_max_step[:, e, start:stop]
        k = self.abs_steps[0] + 1                                                # this step
        rows = 2 if k > self.min_updates else 1                                  # past the wait?
        self.abs_sum[:rows] += size                                              # Σ_t |g_t|
        self.abs_max_step[:rows][size > self.abs_max[:rows]] = k
        torch.maximum(self.abs_max[:rows], size, out=self.abs_max[:rows])        # max_t |g_t|
        for row in range(rows):
            self.abs_steps[row] += 1
        watched = (updates >= self.min_updates).unsqueeze(1)                     # (E, 1): v holds enough updates
        n = updates.clamp(min=1).unsqueeze(1).to(beta2.dtype)
        v_hat = exp_avg_sq / (1 - beta2 ** n).to(exp_avg_sq.dtype)              # Adam's bias-corrected v
        g2 = grad.square()
        ratio = torch.where(g2 == 0, torch.zeros_like(g2), g2 / v_hat)
        finite = torch.isfinite(ratio)
        unseen = (watched & ~finite).sum(1)
        ratio = torch.where(watched & finite, ratio, torch.zeros_like(ratio))
        spiked = ratio > self.threshold
        per_tensor = torch.zeros(grad.shape[0], int(self.tensor_of[-1]) + 1, dtype=torch.float64,
                                 device=grad.device)
        index = self.tensor_of.to(grad.device)
        per_tensor.index_add_(1, index, spiked.to(torch.float64))
        tensor_max = torch.zeros_like(per_tensor).scatter_reduce_(1, index.expand(grad.shape[0], -1),
                                                                  ratio.double(), reduce="amax")
        self._step = torch.cat([spiked.sum(1, keepdim=True).double(), ratio.amax(1, keepdim=True).double(),
                                clipped.unsqueeze(1).double(), unseen.unsqueeze(1).double(), per_tensor,
                                tensor_max], dim=1)

    def end_step(self, k: int) -> None:
        rows = self._step.tolist() if self._step is not None else [[0, 0.0, 0, 0] for _ in self.logs]
        tensors = int(self.tensor_of[-1]) + 1
        for log, row in zip(self.logs, rows):
            count, largest, clipped, unseen = row[:4]
            log.record(int(count), float(largest), int(clipped), int(unseen))
            for index, spikes in enumerate(row[4:4 + tensors]):
                if spikes:
                    log.per_tensor[index] = log.per_tensor.get(index, 0) + int(spikes)
            for index, top in enumerate(row[4 + tensors:]):
                log._tensor_max(index, top)
            log.abs_steps.update({index: list(self.abs_steps) for index in range(tensors)})
        self._step = None


class SpikeTracker:
    """One :class:`SpikeLog` per member trained, in the order the members were trained.

    Pass ``tracker.new_flat`` as the ``observer`` of :func:`tdlab.methods.stability.spam.flat_spam` (E members stacked
    in one engine call: E logs, in member order), or ``tracker.new`` as that of
    :func:`tdlab.methods.stability.spam.spam` (one log per optimizer built); and ``tracker.monitor`` to the run's
    ``monitors``. The engine builds the optimizer of an engine call (or of one member trained alone)
    just before its first evaluation, so the monitor reads the logs of the call being trained
    (``tracker.group``).
    """

    def __init__(self, threshold: float = RATIO_THRESHOLD, min_updates: int = MIN_UPDATES):
        self.threshold, self.min_updates = threshold, min_updates
        self.logs: list[SpikeLog] = []
        self.group: list[SpikeLog] = []           # the logs of the engine call being trained, in member order

    def new(self) -> SpikeLog:
        """One log, for a :class:`tdlab.methods.stability.spam.SPAM` (one member)."""
        self.logs.append(SpikeLog(self.threshold, self.min_updates))
        self.group = self.logs[-1:]
        return self.logs[-1]

    def new_flat(self, layout: dict, members: int) -> FlatSpikeLog:
        """``members`` logs, one per member of a :class:`tdlab.methods.stability.spam.FlatSPAM`, and their observer."""
        self.group = [SpikeLog(self.threshold, self.min_updates) for _ in range(members)]
        self.logs.extend(self.group)
        return FlatSpikeLog(self.group, layout)

    @property
    def current(self) -> SpikeLog:
        if not self.logs:
            raise RuntimeError("no optimizer has been built with this tracker's observer")
        return self.logs[-1]

    def monitor(self, ev) -> dict[tuple[str, str], list[float]]:
        """Logs, for each member of the call being trained: ``spikes`` (spikes in the steps since the last
        evaluation), ``spikes_total`` (since the start), ``spike_ratio`` (the largest r so far), ``clipped``
        (entries SPAM clipped so far) — all under split ``train``."""
        if not self.group:
            raise RuntimeError("no optimizer has been built with this tracker's observer")
        if ev.members != len(self.group):
            raise ValueError(f"the spike monitor watches {len(self.group)} runs, the evaluation has {ev.members}")
        out = {("train", key): [] for key in ("spikes", "spikes_total", "spike_ratio", "clipped")}
        for log in self.group:
            done = log.steps
            previous, log.reported = log.reported, done
            out["train", "spikes"].append(float(log.total(previous, done)))
            out["train", "spikes_total"].append(float(log.total()))
            out["train", "spike_ratio"].append(log.largest() if done else 0.0)
            out["train", "clipped"].append(float(sum(log.clipped)))
        return out


# ----------------------------------------------------------------- SPAM's step size after a reset


def spam_step_multiplier(k: int, delta_t: int, warmup_steps: int, betas: tuple[float, float] = (0.9, 0.999),
                         reset_count: bool = False) -> float:
    """How much larger SPAM's k-th update is than Adam's for a steady gradient (mean ḡ, E[g²] fixed).

    After a reset at step r the moments hold n = k − r + 1 updates, m ≈ (1 − β₁ⁿ)ḡ and
    v ≈ (1 − β₂ⁿ)E[g²], but the released code corrects them with the run's step count t = k
    (:class:`tdlab.methods.stability.spam.SPAM`). Against Adam's m̂/√v̂ ≈ ḡ/√E[g²] the update is then

    .. math::
        s_k\\cdot\\frac{\\sqrt{1-\\beta_2^{k}}}{\\sqrt{1-\\beta_2^{n}}}\\cdot\\frac{1-\\beta_1^{n}}{1-\\beta_1^{k}},

    s_k the post-reset warm-up (:func:`tdlab.methods.stability.spam.spam_warmup`): 0.01 at a reset, then above 1 for
    the rest of the cycle, since v of n ≪ 1/(1 − β₂) updates is far below E[g²]. ``delta_t=0``: Adam, 1.
    ``reset_count=True`` (t reset with m and v, t = n): the two ratios cancel and only s_k is left.
    """
    from tdlab.methods.stability.spam import spam_warmup
    beta1, beta2 = betas
    if delta_t == 0 or k < delta_t:
        return 1.0
    position = k % delta_t
    n = position + 1
    if reset_count:
        return spam_warmup(position, warmup_steps)
    return (spam_warmup(position, warmup_steps) * math.sqrt((1 - beta2 ** k) / (1 - beta2 ** n))
            * (1 - beta1 ** n) / (1 - beta1 ** k))


# ----------------------------------------------------------------- a recipe whose optimizer knobs are SPAM's


def spam_recipe(data, model, tracker: SpikeTracker, *, lr: float, delta_t: int, threshold: float,
                warmup_steps: int, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6, **settings):
    """A :class:`tdlab.core.recipes.Recipe` training with SPAM (:func:`tdlab.methods.stability.spam.flat_spam`), its knobs ``lr``,
    ``delta_t`` (ΔT; 0: no resets), ``threshold`` (θ; 0: no clipping), ``warmup_steps``, ``beta2``,
    ``reset_count`` (the count reset with m and v) and ``clip_norm`` (global-norm clip; 0: none)
    (Adam: ``delta_t=0, threshold=0``), watched by ``tracker`` (its monitor is added to the run's).
    Members that differ only in these knobs and their seed train stacked, in one engine call (the
    SPAM knobs through a :func:`tdlab.core.recipes.per_member` derivation, ``lr`` as the engine's own knob)."""
    from tdlab.methods.stability import spam as optim
    from tdlab.core.recipes import Recipe, per_member

    @per_member
    def optimizer(delta_t: int = delta_t, threshold: float = threshold, warmup_steps: int = warmup_steps,
                  beta2: float = betas[1], reset_count: bool = False, clip_norm: float = 0.0) -> dict:
        return {"optimizer": optim.flat_spam(betas=(betas[0], beta2), eps=eps, delta_t=delta_t, threshold=threshold,
                                             warmup_steps=warmup_steps, observer=tracker.new_flat,
                                             reset_count=reset_count, clip_norm=clip_norm)}

    monitors = [tracker.monitor, *settings.pop("monitors", ())]
    return Recipe(data, model, {"monitors": monitors, "lr": lr, **settings}, derive=(optimizer,))


# (text and transformer are imported inside: they import nothing of this module's)
SPAM_BOOK = {   # the chapter's two settings: (corpus size, context, width, depth, heads, batch, steps, eval every)
    "cpu": dict(size=65_536, context=32, width=32, depth=2, heads=2, batch_size=32, steps=300, eval_every=50),
    "paper": dict(size=480_000, context=256, width=512, depth=8, heads=8, batch_size=512, steps=10_000,
                  eval_every=500, schedule_name="warmup_cosine", warmup=1000, batched=False),
}


def spam_book_recipe(scale: str, tracker: SpikeTracker, *, lr: float, delta_t: int, threshold: float,
                     warmup_steps: int, eps: float = 1e-6, **settings):
    """The SPAM chapter's recipe at ``scale`` (:data:`SPAM_BOOK`): :func:`spam_recipe` on
    :func:`tdlab.core.text.corpus` characters and a :class:`tdlab.core.transformer.TinyTransformer`. ``"cpu"``:
    64 K characters, windows of 32, width 32, 2 blocks, 2 heads, batches of 32, 300 steps at a
    constant rate. ``"paper"``: LLaMA-60M's shape (width 512, 8 blocks, 8 heads), sequences of 256,
    batches of 512, 10 000 steps, 1000 steps of learning-rate warm-up then cosine to 0, one run at a
    time (memory). ``settings`` (``eval_train_subset``, ...) go to the engine."""
    from tdlab.core import text, transformer
    shape = dict(SPAM_BOOK[scale])
    size, context, width, depth, heads = (shape.pop(k) for k in ("size", "context", "width", "depth", "heads"))
    return spam_recipe(lambda: text.corpus(context=context, size=size),
                       lambda: transformer.TinyTransformer(len(text.VOCAB), context=context, width=width,
                                                           depth=depth, heads=heads),
                       tracker, lr=lr, delta_t=delta_t, threshold=threshold, warmup_steps=warmup_steps, eps=eps,
                       **{**shape, **settings})
