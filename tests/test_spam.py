"""SPAM (tdlab.methods.stability.spam.SPAM) against a naive per-element loop written from the official SPAM.py, against
torch's Adam/AdamW with resets and clipping off, and the spike monitor (tdlab.methods.stability.spikes) against ratios
computed by hand from torch.optim.Adam's own state."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from tdlab.core import data, engine, flat, models, train
from tdlab.methods.stability import spam as optim
from tdlab.methods.stability import spikes


@pytest.fixture(scope="module")
def digits():
    return data.digits()


class OfficialCosineDecay:
    """The official ``CosineDecay``: an SGD's learning rate under ``CosineAnnealingLR(T_max + 1)``."""

    def __init__(self, death_rate, t_max):
        self.sgd = torch.optim.SGD(torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(1))]), lr=death_rate)
        self.stepper = torch.optim.lr_scheduler.CosineAnnealingLR(self.sgd, t_max + 1, 0, -1)
        self.t_max = t_max

    def get_dr(self, current_step):
        if current_step >= self.t_max:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.stepper.step(current_step)
        return self.sgd.param_groups[0]["lr"]


def naive_spam(params, grads, lr, betas, eps, wd, delta_t, theta, warmup, accu, reset_count=False):
    """The official step, one element at a time in Python floats. ``grads[k][i]`` is the gradient of
    tensor i at step k+1 (flat lists); returns the parameters after every step. ``reset_count``: the
    count t is set to 0 with m and v at a reset (not in the official code: our switch)."""
    b1, b2 = betas
    p = [list(x) for x in params]
    m = [[0.0] * len(x) for x in params]
    v = [[0.0] * len(x) for x in params]
    t = [0] * len(params)
    total, current, warm = 0, warmup + 1, OfficialCosineDecay(0.99, warmup)
    out = []
    for step_grads in grads:
        scale = 1 - warm.get_dr(current)
        for i, g_list in enumerate(step_grads):
            if (total + 1) % delta_t == 0:
                m[i], v[i] = [0.0] * len(p[i]), [0.0] * len(p[i])
                if reset_count:
                    t[i] = 0
            t[i] += 1
            for j, g in enumerate(g_list):
                k = total + 1
                if theta != 0 and k >= accu and k % delta_t >= accu and g * g > theta * v[i][j]:
                    g = math.copysign(math.sqrt(v[i][j] * theta), g)
                m[i][j] = b1 * m[i][j] + (1 - b1) * g
                v[i][j] = b2 * v[i][j] + (1 - b2) * g * g
                step_size = lr * math.sqrt(1 - b2 ** t[i]) / (1 - b1 ** t[i])
                p[i][j] -= step_size * scale * m[i][j] / (math.sqrt(v[i][j]) + eps)
                if wd > 0:
                    p[i][j] -= lr * wd * p[i][j]
        total += 1
        current += 1
        if total != 0 and (total + 1) % delta_t == 0:
            current, warm = 0, OfficialCosineDecay(0.99, warmup)
        out.append([list(x) for x in p])
    return out


def gradient_stream(steps, shapes, seed=0, spike_every=7, spike=300.0):
    """Random gradients with a large spike in one entry every ``spike_every`` steps."""
    gen = torch.Generator().manual_seed(seed)
    stream = []
    for k in range(steps):
        step = [torch.randn(n, generator=gen, dtype=torch.float64) for n in shapes]
        if k % spike_every == spike_every - 1:
            step[k % len(shapes)][k % shapes[k % len(shapes)]] *= spike
        stream.append(step)
    return stream


def run_spam(params, stream, **kwargs):
    tensors = [p.clone().requires_grad_() for p in params]
    opt = optim.SPAM(tensors, **kwargs)
    trajectory = []
    for step in stream:
        for p, g in zip(tensors, step):
            p.grad = g.clone()
        opt.step()
        trajectory.append([p.detach().clone() for p in tensors])
    return opt, trajectory


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_spam_matches_naive_official_loop(wd):
    """Several resets (ΔT = 12 over 40 steps), warm-up 5, clipping after 4 steps with θ = 20 (spikes of 300×)."""
    shapes = [5, 3]
    gen = torch.Generator().manual_seed(1)
    params = [torch.randn(n, generator=gen, dtype=torch.float64) for n in shapes]
    stream = gradient_stream(40, shapes)
    settings = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=wd)
    spam_knobs = dict(delta_t=12, threshold=20.0, warmup_steps=5, grad_accu_steps=4)
    opt, got = run_spam(params, stream, **settings, **spam_knobs)
    want = naive_spam([p.tolist() for p in params], [[g.tolist() for g in s] for s in stream],
                      settings["lr"], settings["betas"], settings["eps"], wd, 12, 20.0, 5, 4)
    for k, (a, b) in enumerate(zip(got, want)):
        for x, y in zip(a, b):
            assert torch.allclose(x, torch.tensor(y, dtype=torch.float64), atol=1e-12, rtol=1e-10), f"step {k + 1}"
    # clipping was triggered, and it changed the run: without it the trajectory differs
    _, unclipped = run_spam(params, stream, **settings, **{**spam_knobs, "threshold": 0.0})
    assert not torch.allclose(unclipped[-1][0], got[-1][0])
    assert opt.total_step == 40 and all(s["step"] == 40 for s in opt.state.values())   # t is never reset


def test_spam_with_the_count_reset_matches_the_naive_loop_with_the_count_reset():
    """reset_count=True: t restarts with m and v at every reset — against the per-element loop with t reset,
    over several resets with clipping and warm-up; and it differs from the released step after a reset."""
    shapes = [5, 3]
    gen = torch.Generator().manual_seed(2)
    params = [torch.randn(n, generator=gen, dtype=torch.float64) for n in shapes]
    stream = gradient_stream(40, shapes, seed=5)
    settings = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.0)
    knobs = dict(delta_t=12, threshold=20.0, warmup_steps=5, grad_accu_steps=4)
    opt, got = run_spam(params, stream, **settings, **knobs, reset_count=True)
    want = naive_spam([p.tolist() for p in params], [[g.tolist() for g in s] for s in stream],
                      0.01, (0.9, 0.99), 1e-6, 0.0, 12, 20.0, 5, 4, reset_count=True)
    for k, (a, b) in enumerate(zip(got, want)):
        for x, y in zip(a, b):
            assert torch.allclose(x, torch.tensor(y, dtype=torch.float64), atol=1e-12, rtol=1e-10), f"step {k + 1}"
    assert all(s["step"] == 5 for s in opt.state.values())     # the last reset at step 36: t = 1 there, 5 at 40
    _, released = run_spam(params, stream, **settings, **knobs)
    assert torch.equal(released[10][0], got[10][0]) and not torch.allclose(released[12][0], got[12][0])


def test_spam_clip_norm_is_clip_grad_norm_before_the_step():
    """clip_norm=c: the same run as torch.nn.utils.clip_grad_norm_(params, c) before each step of SPAM
    without it (the official script's --grad_clipping), with resets, clipping and Adam's limit."""
    shapes = [5, 3]
    gen = torch.Generator().manual_seed(4)
    params = [torch.randn(n, generator=gen, dtype=torch.float64) for n in shapes]
    stream = gradient_stream(30, shapes, seed=6)
    for knobs in (dict(delta_t=0, threshold=0.0), dict(delta_t=10, threshold=20.0, grad_accu_steps=4)):
        _, got = run_spam(params, stream, lr=0.01, clip_norm=1.5, **knobs)
        clipped = []
        for step in stream:
            tensors = [g.clone().requires_grad_() for g in step]
            for t, g in zip(tensors, step):
                t.grad = g.clone()
            torch.nn.utils.clip_grad_norm_(tensors, 1.5)
            clipped.append([t.grad for t in tensors])
        _, want = run_spam(params, clipped, lr=0.01, **knobs)
        assert all(torch.allclose(torch.cat(a), torch.cat(b), atol=1e-14, rtol=1e-12) for a, b in zip(got, want))
        _, unclipped = run_spam(params, stream, lr=0.01, **knobs)
        assert not torch.allclose(unclipped[-1][0], got[-1][0])


def test_spam_official_defaults_cross_a_reset():
    """The released defaults for clipping (after step 20 and 20 into a cycle) across ΔT = 30."""
    shapes = [4]
    params = [torch.linspace(-1, 1, 4, dtype=torch.float64)]
    stream = gradient_stream(70, shapes, seed=3, spike_every=5, spike=1e3)
    _, got = run_spam(params, stream, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, delta_t=30, threshold=5000.0,
                      warmup_steps=10)
    want = naive_spam([p.tolist() for p in params], [[g.tolist() for g in s] for s in stream],
                      1e-3, (0.9, 0.999), 1e-6, 0.0, 30, 5000.0, 10, 20)
    assert torch.allclose(got[-1][0], torch.tensor(want[-1][0], dtype=torch.float64), atol=1e-12)


def test_warmup_factor_is_the_official_cosine_decay():
    decay = OfficialCosineDecay(0.99, 150)
    for position in (0, 1, 17, 75, 149, 150, 400):
        assert optim.spam_warmup(position, 150) == pytest.approx(1 - decay.get_dr(position), abs=1e-12)
    assert optim.spam_warmup(None, 150) == 1.0
    assert optim.spam_warmup(0, 150) == pytest.approx(0.01)


def test_reset_zeroes_the_moments_at_every_multiple_of_delta_t():
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = optim.SPAM([p], lr=0.1, delta_t=4, threshold=0.0, warmup_steps=0)
    for k in range(1, 10):
        g = torch.full((3,), float(k), dtype=torch.float64)
        p.grad = g
        opt.step()
        state = opt.state[p]
        if k % 4 == 0:      # the step right after a reset: m = (1 − β₁) g, v = (1 − β₂) g²
            assert torch.allclose(state["exp_avg"], 0.1 * g)
            assert torch.allclose(state["exp_avg_sq"], 0.001 * g**2)


def _mlp_pair(seed=0):
    torch.manual_seed(seed)
    model = models.MLP(64, 10, width=16, depth=1).double()
    twin = models.MLP(64, 10, width=16, depth=1).double()
    twin.load_state_dict(model.state_dict())
    return model, twin


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_resets_and_clipping_off_is_adam(wd, digits):
    """ΔT = 0 and θ = 0: torch's Adam to rounding — and with weight decay, Adam followed by the decoupled
    decay w ← w(1 − ηλ) after the update, where the released code puts it (torch's AdamW decays before).
    ε = 10⁻³⁰ is negligible: SPAM adds ε outside the bias correction, torch inside (and the digits'
    constant pixels give weights whose gradient is 0, where ε = 0 would divide 0 by 0)."""
    model, twin = _mlp_pair()
    lr = 3e-3
    ours = optim.spam(lr=lr, eps=1e-30, weight_decay=wd, delta_t=0, threshold=0.0)(model.parameters())
    reference = torch.optim.Adam(twin.parameters(), lr=lr, eps=1e-30)
    for index in engine.batch_order(digits.num_train, 64, 25, seed=0):
        x, y = digits.x_train[index].double(), digits.y_train[index]
        for net, opt in ((model, ours), (twin, reference)):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        with torch.no_grad():
            for p in twin.parameters():
                p.mul_(1 - lr * wd)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-10, rtol=0)


def test_spike_log_counts_match_ratios_from_adam_state(digits):
    """The observer of SPAM-as-Adam against g² / v̂ computed by hand from torch.optim.Adam's state."""
    model, twin = _mlp_pair(seed=2)
    threshold, lr = 8.0, 1e-2
    log = spikes.SpikeLog(threshold, min_updates=5)
    ours = optim.SPAM(model.parameters(), lr=lr, eps=1e-30, delta_t=0, threshold=0.0, observer=log)
    adam = torch.optim.Adam(twin.parameters(), lr=lr, eps=1e-30)
    counts, largest, first, tensor_max, sizes = [], [], [], {}, []
    for index in engine.batch_order(digits.num_train, 32, 40, seed=1):
        x, y = digits.x_train[index].double(), digits.y_train[index]
        for net, opt in ((model, ours), (twin, adam)):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
        sizes.append([p.grad.abs().flatten().tolist() for p in twin.parameters()])   # |g| of every entry, every step
        count, top, unseen = 0, 0.0, 0
        for i, p in enumerate(twin.parameters()):
            state = adam.state.get(p)
            if not state:
                continue
            t = int(state["step"])
            if t < 5:
                continue
            v_hat = state["exp_avg_sq"] / (1 - 0.999 ** t)
            for g, v in zip(p.grad.flatten().tolist(), v_hat.flatten().tolist()):
                if g == 0:
                    continue
                if v == 0:              # a gradient 0 until now: counted apart, not a ratio
                    unseen += 1
                    continue
                r = g * g / v
                count += r > threshold
                top = max(top, r)
                if r > tensor_max.get(i, 0.0):          # each tensor's largest ratio over the run
                    tensor_max[i] = r
        counts.append(count)
        largest.append(top)
        first.append(unseen)
        ours.step()
        adam.step()
    assert log.counts == counts
    assert sum(counts) > 0                                   # the comparison is not of zeros
    assert log.max_ratio == pytest.approx(largest, rel=1e-9)
    assert log.first_seen == first
    assert log.clipped == [0] * 40 and log.total() == sum(counts)
    assert log.per_tensor_max == pytest.approx(tensor_max, rel=1e-9) and len(tensor_max) == 4
    assert max(tensor_max.values()) == pytest.approx(log.largest(), rel=1e-9)
    assert log.tensor_largest([1, 3]) == pytest.approx(max(tensor_max[1], tensor_max[3]), rel=1e-9)
    assert log.tensor_largest([]) == 0.0
    for first, after_wait in ((0, False), (5, True)):       # every step; steps 6..40, after the 5-step wait
        offline, scored = {}, []                # the paper's score by hand: max_t |g| / mean_t |g|, largest per tensor
        for i in range(4):
            best = 0.0
            for entry in range(len(sizes[0][i])):
                series = [step[i][entry] for step in sizes[first:]]
                mean = sum(series) / len(series)
                score = max(series) / mean if mean > 0 else 0.0
                best = max(best, score)
                scored.append((score, first + 1 + series.index(max(series))))   # and the step of its max
            offline[i] = best
        assert log.offline_scores(after_wait) == pytest.approx(offline, rel=1e-9)
        top = max(score for score, _ in scored)          # ties (an entry active on one step scores T) allow any
        assert log.offline_worst_step(range(4), after_wait) in {step for score, step in scored if score >= top * (1 - 1e-9)}
        assert max(offline.values()) > 1.5                      # not a comparison of ones: the |g| vary
        assert log.tensor_offline_largest([0, 2], after_wait) == pytest.approx(max(offline[0], offline[2]), rel=1e-9)
    assert log.abs_steps == {i: [40, 35] for i in range(4)}


def test_spike_monitor_in_the_engine_and_spam_clips(digits):
    tracker = spikes.SpikeTracker(threshold=8.0, min_updates=3)
    mlp = lambda: models.MLP(64, 10, width=16, depth=1)   # noqa: E731
    history = engine.run(mlp, digits, [{"seed": 0}, {"seed": 1}], batch_size=32, steps=60, eval_every=20,
                         optimizer=optim.spam(lr=1e-2, delta_t=30, threshold=5.0, warmup_steps=5, grad_accu_steps=5,
                                              observer=tracker.new),
                         monitors=[tracker.monitor], progress=False)
    assert len(tracker.logs) == 2 and history.num_members == 2
    for member, log in enumerate(tracker.logs):
        steps, per_window = history.curve("train", "spikes", member)
        assert steps.tolist() == [0, 20, 40, 60]
        assert per_window.sum() == log.total() == history.final("train", "spikes_total", member)
        assert history.final("train", "spike_ratio", member) == pytest.approx(log.largest())
        assert history.final("train", "clipped", member) == sum(log.clipped) > 0
        # no clipping in the first grad_accu_steps steps of the run and of the cycle after the reset at 30
        assert sum(log.clipped[:4]) == 0 and sum(log.clipped[29:34]) == 0
    assert history.knobs[0]["optimizer"] == "spam"


def test_spike_ratio_and_rejections():
    g = torch.tensor([0.0, 1.0, 3.0])
    v = torch.tensor([0.0, 0.0, 0.9])
    r = spikes.spike_ratio(g, v, updates=1, beta2=0.9)          # v̂ = v / 0.1
    assert r[0] == 0 and math.isinf(r[1]) and r[2] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        optim.spam(lr=1e-3, delta_t=1)
    with pytest.raises(ValueError):
        optim.spam(lr=-1.0)
    with pytest.raises(ValueError):
        optim.spam(lr=1e-3, threshold=-1)
    assert optim.spam(lr=1e-3, delta_t=0, threshold=0).name == "adam"


# ----------------------------------------------------------------- SPAM stacked on the flat (E, P) buffer

FLAT_MEMBERS = [   # Adam; SPAM; resets only; clipping only — different ΔT, θ, warm-up, β₂, lr, decay, gradients
    dict(delta_t=0, threshold=0.0, warmup_steps=5, beta2=0.99, lr=0.01, wd=0.0, seed=0),
    dict(delta_t=12, threshold=20.0, warmup_steps=5, beta2=0.99, lr=0.02, wd=0.1, seed=1),
    dict(delta_t=9, threshold=0.0, warmup_steps=3, beta2=0.999, lr=0.005, wd=0.0, seed=2),
    dict(delta_t=0, threshold=8.0, warmup_steps=0, beta2=0.95, lr=0.01, wd=0.05, seed=3),
]


def _member_stream(seed, steps=40, shapes=(5, 3)):
    """A gradient stream with spikes, and one entry whose gradient is 0 for 15 steps (v = 0 there)."""
    stream = gradient_stream(steps, list(shapes), seed=seed)
    for k in range(15):
        stream[k][0][0] = 0.0
    return stream


def test_flat_spam_equals_separate_spam_runs():
    """E members of FlatSPAM with their own ΔT, θ, warm-up, β₂, lr and decay against E runs of optim.SPAM
    (the torch.optim reference), in float64 over 40 steps: several resets, clipping, zero-v entries; and the
    flat spike observer against each run's SpikeLog."""
    shapes, steps = (5, 3), 40
    gen = torch.Generator().manual_seed(7)
    start = [torch.randn(sum(shapes), generator=gen, dtype=torch.float64) for _ in FLAT_MEMBERS]
    streams = [_member_stream(m["seed"], steps, shapes) for m in FLAT_MEMBERS]
    layout = engine.flat_layout([("a", (shapes[0],)), ("b", (shapes[1],))])
    tracker = spikes.SpikeTracker(threshold=4.0, min_updates=3)
    rule = optim.SPAMRule.per_member(
        [optim.flat_spam(betas=(0.9, m["beta2"]), eps=1e-6, delta_t=m["delta_t"], threshold=m["threshold"],
                         warmup_steps=m["warmup_steps"], grad_accu_steps=4, observer=tracker.new_flat)
         for m in FLAT_MEMBERS])
    flat = torch.stack(start).clone()
    stepper = rule.flat(flat, layout)
    lr = torch.tensor([m["lr"] for m in FLAT_MEMBERS], dtype=torch.float64)
    wd = torch.tensor([m["wd"] for m in FLAT_MEMBERS], dtype=torch.float64)
    trajectory = []
    for k in range(steps):
        stepper.step(torch.stack([torch.cat(s[k]) for s in streams]), lr, wd, None)
        trajectory.append(flat.clone())
    for e, m in enumerate(FLAT_MEMBERS):
        log = spikes.SpikeLog(4.0, min_updates=3)
        params = list(start[e].split(list(shapes)))
        opt, want = run_spam(params, streams[e], lr=m["lr"], betas=(0.9, m["beta2"]), eps=1e-6,
                             weight_decay=m["wd"], delta_t=m["delta_t"], threshold=m["threshold"],
                             warmup_steps=m["warmup_steps"], grad_accu_steps=4, observer=log)
        for k in range(steps):
            assert torch.allclose(trajectory[k][e], torch.cat(want[k]), atol=1e-12, rtol=1e-10), (e, k + 1)
        ours = tracker.logs[e]
        assert ours.counts == log.counts and ours.clipped == log.clipped and ours.first_seen == log.first_seen
        assert ours.per_tensor == log.per_tensor
        assert ours.max_ratio == pytest.approx(log.max_ratio, rel=1e-9)
        assert ours.per_tensor_max == pytest.approx(log.per_tensor_max, rel=1e-9) and len(log.per_tensor_max) == 2
        assert ours.abs_steps == log.abs_steps == {0: [steps, steps - 3], 1: [steps, steps - 3]}
        for first, after_wait in ((0, False), (3, True)):                         # every step; after the 3-step wait
            assert ours.offline_scores(after_wait) == pytest.approx(log.offline_scores(after_wait), rel=1e-9)
            assert ours.offline_worst_step([0, 1], after_wait) == log.offline_worst_step([0, 1], after_wait) > first
            sizes = torch.stack([torch.cat(g) for g in streams[e][first:]]).abs()  # (steps, P): every |g|, unclipped
            score = torch.nan_to_num(sizes.max(0).values / sizes.mean(0))         # max_t |g| / mean_t |g|; 0/0 → 0
            by_hand = {i: float(part.max()) for i, part in enumerate(score.split(list(shapes)))}
            assert ours.offline_scores(after_wait) == pytest.approx(by_hand, rel=1e-9)
    logs = tracker.logs
    assert sum(logs[1].clipped) > 0 and sum(logs[3].clipped) > 0 and sum(logs[0].clipped) == 0   # clipping happened
    assert all(log.total() > 0 for log in logs) and sum(logs[3].first_seen) > 0                # spikes, v = 0 entries
    assert stepper.updates.tolist() == [40, 5, 5, 40]         # the last resets at step 36 (ΔT = 12 and ΔT = 9)


def test_flat_spam_count_reset_and_global_clip_equal_separate_spam_runs():
    """Members with reset_count and clip_norm (per member: the row norm of the (E, P) gradient) stacked with
    members without, against separate optim.SPAM runs, float64, 40 steps."""
    members = [dict(delta_t=12, threshold=20.0, reset_count=True, clip_norm=0.0),
               dict(delta_t=12, threshold=20.0, reset_count=False, clip_norm=0.0),
               dict(delta_t=0, threshold=0.0, reset_count=False, clip_norm=2.0),
               dict(delta_t=9, threshold=8.0, reset_count=True, clip_norm=3.0)]
    shapes, steps = (5, 3), 40
    gen = torch.Generator().manual_seed(8)
    start = [torch.randn(sum(shapes), generator=gen, dtype=torch.float64) for _ in members]
    streams = [_member_stream(e, steps, shapes) for e in range(len(members))]
    rule = optim.SPAMRule.per_member([optim.flat_spam(betas=(0.9, 0.99), warmup_steps=4, grad_accu_steps=4, **m)
                                      for m in members])
    flat = torch.stack(start).clone()
    stepper = rule.flat(flat, {})
    lr, wd = torch.full((4,), 0.01, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    trajectory = []
    for k in range(steps):
        stepper.step(torch.stack([torch.cat(s[k]) for s in streams]), lr, wd, None)
        trajectory.append(flat.clone())
    for e, m in enumerate(members):
        _, want = run_spam(list(start[e].split(list(shapes))), streams[e], lr=0.01, betas=(0.9, 0.99),
                           warmup_steps=4, grad_accu_steps=4, **m)
        for k in range(steps):
            assert torch.allclose(trajectory[k][e], torch.cat(want[k]), atol=1e-12, rtol=1e-10), (e, k + 1)
    assert not torch.allclose(trajectory[-1][0], trajectory[-1][1])       # the count reset changed the run
    # a member dict without the new knobs is the released step (older callers)
    assert optim.SPAMRule([{"delta_t": 5, "threshold": 1.0, "warmup_steps": 0, "beta2": 0.99}]).members[0][
        "reset_count"] is False


def test_flat_spam_without_resets_and_clipping_is_flat_adam():
    """ΔT = 0, θ = 0 and no decay: tdlab.core.flat's Adam, up to ε's place (SPAM adds ε to √v, Adam to √v̂: with
    ε = 10⁻³⁰ both are negligible)."""
    gen = torch.Generator().manual_seed(3)
    start = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    a, b = start.clone(), start.clone()
    spam = optim.flat_spam(betas=(0.9, 0.99), eps=1e-30, delta_t=0, threshold=0.0).flat(a, {})
    adam = flat.FlatOptimizer("adam", b, betas=(0.9, 0.99), eps=1e-30)
    lr, zero = torch.tensor([1e-2, 3e-3, 1e-3], dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for _ in range(30):
        grad = torch.randn(3, 8, generator=gen, dtype=torch.float64)
        spam.step(grad, lr, zero, zero)
        adam.step(grad, lr, zero, zero)
    assert torch.allclose(a, b, atol=1e-12, rtol=0) and not torch.allclose(a, start)


def _spam_digits_recipe(digits, tracker):
    mlp = lambda: models.MLP(64, 10, width=16, depth=1)   # noqa: E731
    return spikes.spam_recipe(digits, mlp, tracker, lr=1e-2, delta_t=30, threshold=5.0, warmup_steps=5,
                              batch_size=32, steps=60, eval_every=20, progress=False)


ENGINE_MEMBERS = [{"delta_t": 0, "threshold": 0.0, "seed": 0}, {"delta_t": 30, "threshold": 5.0, "seed": 0},
                  {"delta_t": 0, "threshold": 5.0, "seed": 1, "lr": 3e-3},
                  {"delta_t": 20, "threshold": 0.0, "seed": 2, "warmup_steps": 10, "beta2": 0.99}]


def test_spam_recipe_trains_its_members_in_one_stacked_call(digits, monkeypatch):
    """The recipe's members (different ΔT, θ, warm-up, β₂, lr, seed) in one engine call, stacked, equal
    one-at-a-time runs of the torch.optim SPAM to rounding; the spike logs (in member order) and the
    monitor's numbers are each run's."""
    from tdlab.core import recipes
    calls = []
    real_run = recipes.run
    monkeypatch.setattr(recipes, "run", lambda *a, **k: calls.append(k) or real_run(*a, **k))
    tracker = spikes.SpikeTracker(threshold=8.0, min_updates=3)
    history = _spam_digits_recipe(digits, tracker).sweep(ENGINE_MEMBERS)
    assert len(calls) == 1 and isinstance(calls[0]["optimizer"], optim.SPAMRule) and len(tracker.logs) == 4
    for member, m in enumerate(ENGINE_MEMBERS):
        knobs = {"lr": 1e-2, "warmup_steps": 5, "beta2": 0.999, **m}
        reference = spikes.SpikeTracker(threshold=8.0, min_updates=3)
        alone = engine.run(lambda: models.MLP(64, 10, width=16, depth=1), digits, [{"seed": m["seed"]}],
                           batch_size=32, steps=60, eval_every=20, monitors=[reference.monitor], progress=False,
                           optimizer=optim.spam(lr=knobs["lr"], betas=(0.9, knobs["beta2"]), delta_t=knobs["delta_t"],
                                                threshold=knobs["threshold"], warmup_steps=knobs["warmup_steps"],
                                                observer=reference.new))
        got, want = history.models[member], alone.models[0]
        for p, q in zip(got.parameters(), want.parameters()):
            assert torch.allclose(p, q, atol=1e-5, rtol=0), member
        for split in ("train", "test"):
            assert history.curve(split, "loss", member)[1] == pytest.approx(alone.curve(split, "loss")[1], abs=1e-5)
        ours, theirs = tracker.logs[member], reference.logs[0]
        assert (ours.counts, ours.clipped, ours.first_seen, ours.per_tensor) == (
            theirs.counts, theirs.clipped, theirs.first_seen, theirs.per_tensor), member
        assert ours.max_ratio == pytest.approx(theirs.max_ratio, rel=1e-4)
        assert ours.per_tensor_max == pytest.approx(theirs.per_tensor_max, rel=1e-4)
        for after_wait in (False, True):
            assert ours.offline_scores(after_wait) == pytest.approx(theirs.offline_scores(after_wait), rel=1e-4)
        assert history.final("train", "spikes_total", member) == theirs.total()
        assert history.final("train", "clipped", member) == sum(theirs.clipped)
        assert {k: history.knobs[member][k] for k in knobs} == knobs
        assert history.knobs[member]["optimizer"] == ("spam" if m["delta_t"] or m["threshold"] else "adam")
    assert sum(tracker.logs[1].clipped) > 0 and sum(tracker.logs[0].clipped) == 0
    assert sum(log.total() for log in tracker.logs) > 0


def test_spam_recipe_one_run_and_members_one_at_a_time(digits):
    """A panel's one run (the flat buffer of one member), and members trained one at a time (batched=False):
    the same numbers as the stacked call."""
    tracker = spikes.SpikeTracker(threshold=8.0, min_updates=3)
    recipe = _spam_digits_recipe(digits, tracker)
    stacked = recipe.sweep(ENGINE_MEMBERS[:2])
    one = recipe(**ENGINE_MEMBERS[1])
    apart = recipe.but(batched=False).sweep(ENGINE_MEMBERS[:2])
    assert len(tracker.logs) == 2 + 1 + 2
    assert one.num_members == 1 and one.knobs[0]["delta_t"] == 30 and one.knobs[0]["optimizer"] == "spam"
    assert tracker.logs[2].counts == tracker.logs[1].counts and tracker.logs[2].clipped == tracker.logs[1].clipped
    for member in range(2):
        assert apart.knobs[member]["delta_t"] == stacked.knobs[member]["delta_t"]
        assert apart.final("test", "loss", member) == pytest.approx(stacked.final("test", "loss", member), abs=1e-5)
        assert tracker.logs[3 + member].clipped == tracker.logs[member].clipped
    assert one.final("test", "loss") == pytest.approx(stacked.final("test", "loss", 1), abs=1e-5)


def test_spam_rule_rejections():
    with pytest.raises(ValueError):
        optim.flat_spam(delta_t=1)
    with pytest.raises(ValueError):
        optim.flat_spam(threshold=-1.0)
    with pytest.raises(ValueError):                  # shared settings must agree
        optim.SPAMRule.per_member([optim.flat_spam(eps=1e-6), optim.flat_spam(eps=1e-8)])
    rule = optim.SPAMRule.per_member([optim.flat_spam(delta_t=0, threshold=0.0), optim.flat_spam()])
    assert rule.member_settings == [{"optimizer": "adam"}, {"optimizer": "spam"}] and rule.name == "spam"
    with pytest.raises(ValueError):                  # two settings for a call of three members
        rule.flat(torch.zeros(3, 4), {})


@pytest.mark.parametrize("reset_count", [False, True])
def test_step_multiplier_is_spams_update_over_adams_for_a_steady_gradient(reset_count):
    """spikes.spam_step_multiplier against the updates of optim.SPAM and of Adam (ΔT = 0) on a constant
    gradient, step by step across three resets: the released step, and with the count reset only the warm-up."""
    def updates(**knobs):
        p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        opt = optim.SPAM([p], lr=1e-3, eps=1e-30, threshold=0.0, warmup_steps=6, **knobs)
        out = []
        for _ in range(45):
            before = p.detach().clone()
            p.grad = torch.tensor([0.5, -2.0], dtype=torch.float64)
            opt.step()
            out.append((before - p.detach())[0].item())
        return out
    spam, adam = updates(delta_t=10, reset_count=reset_count), updates(delta_t=0)
    for k in range(1, 46):
        want = spikes.spam_step_multiplier(k, 10, 6, reset_count=reset_count)
        assert spam[k - 1] / adam[k - 1] == pytest.approx(want, rel=1e-9), k
    assert spikes.spam_step_multiplier(160, 100, 30, reset_count=True) == 1.0 < spikes.spam_step_multiplier(160, 100, 30)


def test_train_subset_evaluation_of_next_character_windows_equals_brute_force():
    """eval_train_subset on sequence data (the SPAM chapter's windows): the train loss is the per-token
    cross-entropy of the final model on the windows of engine.train_subset; the test loss is unchanged."""
    from tdlab.core import text, transformer
    chars = text.corpus(context=8, size=4096)
    model = lambda: transformer.TinyTransformer(len(text.VOCAB), context=8, width=8, depth=1, heads=2)  # noqa: E731
    common = dict(optimizer=optim.flat_spam(delta_t=0, threshold=0.0), steps=6, eval_every=3, batch_size=16,
                  data_seed=2, progress=False)
    sub = engine.run(model, chars, [{"seed": 0}, {"seed": 1}], eval_train_subset=40, **common)
    full = engine.run(model, chars, [{"seed": 0}, {"seed": 1}], **common)
    pick = engine.train_subset(chars.num_train, 40, 2)
    for member in range(2):
        with torch.no_grad():
            logits = sub.models[member](chars.x_train[pick])
        want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chars.y_train[pick].reshape(-1)).item()
        assert sub.final("train", "loss", member) == pytest.approx(want, rel=1e-5)
        assert sub.final("test", "loss", member) == pytest.approx(full.final("test", "loss", member), rel=1e-6)
