"""The tiny Transformer (tdlab.core.transformer) and the standard-library text corpus (tdlab.core.text)."""
import math

import pytest
import torch
import torch.nn.functional as F

from tdlab.core import engine, text
from tdlab.core.transformer import LN_EPS, TinyTransformer, attention_stats


def small(qk_layernorm=False, bias=False, seed=0):
    torch.manual_seed(seed)
    return TinyTransformer(vocab=11, context=8, width=12, depth=2, heads=3, qk_layernorm=qk_layernorm, bias=bias)


def tokens(batch=4, length=8, seed=1):
    return torch.randint(0, 11, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("qk_layernorm", [False, True])
def test_causal_a_future_token_changes_no_earlier_logit(qk_layernorm):
    model, x = small(qk_layernorm), tokens()
    changed = x.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 11
    before, after = model(x), model(changed)
    assert torch.equal(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


@pytest.mark.parametrize("qk_layernorm", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_shapes_and_qk_layernorm_parameters(qk_layernorm, bias):
    model = small(qk_layernorm, bias)
    assert model(tokens(length=5)).shape == (4, 5, 11)
    names = {name for name, _ in model.named_parameters()}
    assert ("blocks.0.q_scale" in names) == qk_layernorm and ("blocks.1.k_scale" in names) == qk_layernorm
    assert model.blocks[0].q_scale.shape == (4,) if qk_layernorm else True    # one scale per head dim, shared
    assert ("blocks.0.qkv_bias" in names) == bias
    with pytest.raises(ValueError):
        model(tokens(length=9))                                                # longer than the context


def naive_stats(model, x):
    """Block by block with per-head loops and explicit sums: the max attention logit and mean entropy."""
    P = dict(model.named_parameters())
    T, d, H = x.shape[1], model.width, model.heads
    dh = d // H

    def ln(h, scale, bias=None):
        mu = h.mean(-1, keepdim=True)
        var = ((h - mu) ** 2).mean(-1, keepdim=True)
        out = (h - mu) / torch.sqrt(var + LN_EPS) * scale
        return out if bias is None else out + bias

    h = P["tok"][x] + P["pos"][:T]
    out = []
    for b in range(model.depth):
        p = lambda n: P.get(f"blocks.{b}.{n}")                                  # noqa: E731
        a = ln(h, p("ln1_scale"), p("ln1_bias"))
        qkv = a @ p("qkv").T + (0 if p("qkv_bias") is None else p("qkv_bias"))
        q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
        largest, entropies, heads = -math.inf, [], []
        for head in range(H):
            s = slice(head * dh, (head + 1) * dh)
            qh, kh, vh = q[..., s], k[..., s], v[..., s]
            if model.qk_layernorm:
                qh, kh = ln(qh, p("q_scale"), p("q_bias")), ln(kh, p("k_scale"), p("k_bias"))
            rows = []
            for i in range(T):
                z = (qh[:, i:i + 1] * kh[:, :i + 1]).sum(-1) / math.sqrt(dh)    # (B, i+1): j ≤ i only
                largest = max(largest, z.max().item())
                w = torch.softmax(z, -1)
                entropies.append(-(w * torch.log(w)).sum(-1))
                rows.append((w.unsqueeze(-1) * vh[:, :i + 1]).sum(1))
            heads.append(torch.stack(rows, 1))
        h = h + torch.cat(heads, -1) @ p("proj").T + (0 if p("proj_bias") is None else p("proj_bias"))
        a = ln(h, p("ln2_scale"), p("ln2_bias"))
        hidden = F.gelu(a @ p("fc1").T + (0 if p("fc1_bias") is None else p("fc1_bias")))
        h = h + hidden @ p("fc2").T + (0 if p("fc2_bias") is None else p("fc2_bias"))
        out.append((largest, torch.stack(entropies).mean().item()))
    logits = ln(h, P["ln_f_scale"], P.get("ln_f_bias")) @ P["head"].T
    return out, logits


@pytest.mark.parametrize("qk_layernorm", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_attention_stats_and_logits_match_a_naive_computation(qk_layernorm, bias):
    model, x = small(qk_layernorm, bias), tokens()
    with torch.no_grad():
        for block in model.blocks:                       # sharper attention than at init, and non-trivial LN scales
            block.qkv.mul_(3.0)
            for name, p in block.named_parameters():
                if "scale" in name or "bias" in name:
                    p.add_(0.3 * torch.randn_like(p))
        expected, logits = naive_stats(model, x)
        got = attention_stats(model, x)
        assert torch.allclose(model(x), logits, atol=1e-5)
    assert len(got) == model.depth
    for stats, (largest, entropy) in zip(got, expected):
        assert stats["max_logit"].shape == (1,)
        assert stats["max_logit"].item() == pytest.approx(largest, rel=1e-5)
        assert stats["entropy"].item() == pytest.approx(entropy, rel=1e-5)


def test_stacked_forward_and_stats_equal_each_member():
    models = [small(True, seed=s) for s in (0, 1)]
    x = tokens()
    params = {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models])
              for name, _ in models[0].named_parameters()}
    stacked = models[0].forward_stacked(params, x)
    stats = attention_stats(models[0], x, params)
    for member, model in enumerate(models):
        assert torch.allclose(stacked[member], model(x), atol=1e-6)
        single = attention_stats(model, x)
        for layer in range(model.depth):
            for key in ("max_logit", "entropy"):
                assert stats[layer][key][member].item() == pytest.approx(single[layer][key].item(), rel=1e-5)


def test_corpus_is_deterministic_and_decodes_back_to_the_source():
    data = text.corpus(context=16, size=20_000)
    again = text.corpus(context=16, size=20_000)
    assert torch.equal(data.x_train, again.x_train) and torch.equal(data.y_test, again.y_test)
    assert data.num_classes == len(text.VOCAB) == 96
    source = text.normalize((text.stdlib_dir() / text.STDLIB_FILES[0]).read_text(encoding="utf-8"))
    stream = text.decode(data.x_train.flatten())                    # non-overlapping windows, in order
    assert stream == text.stdlib_text(20_000)[:len(stream)]
    assert stream[:1000] == source[:1000]
    assert torch.equal(data.y_train[:, :-1], data.x_train[:, 1:])   # y is x shifted by one token
    assert torch.equal(data.y_train[:-1, -1], data.x_train[1:, 0])
    assert text.decode(text.encode("def f(x):\n    return x")) == "def f(x):\n    return x"
    assert text.normalize("a\tb\u00e9") == "a    b?"
    spread = text.corpus(context=16, size=20_000, num_train=50, num_test=7)
    assert spread.x_train.shape == (50, 16) and spread.x_test.shape == (7, 16)


def test_grammar_fallback_is_deterministic():
    a, b = text.grammar_text(5000), text.grammar_text(5000)
    assert a == b and len(a) == 5000 and set(a) <= set(text.VOCAB)
    data = text.corpus(context=8, size=5000, source="grammar")
    assert data.info["source"] == "generated Python-like grammar"


def test_a_stacked_sweep_equals_separate_runs():
    data = text.corpus(context=8, size=8_000, num_train=64, num_test=16)
    factory = lambda: TinyTransformer(len(text.VOCAB), context=8, width=8, depth=1, heads=2)   # noqa: E731
    members = [{"lr": 3e-3, "seed": 0}, {"lr": 1e-2, "seed": 1}]
    kwargs = dict(steps=6, batch_size=16, eval_every=3, progress=False, betas=(0.9, 0.95))
    stacked = engine.run(factory, data, members, batched=True, **kwargs)
    for member, settings in enumerate(members):
        alone = engine.run(factory, data, [settings], **kwargs)
        for split in ("train", "test"):
            a = stacked.member(member).curve(split, "loss")[1]
            b = alone.curve(split, "loss")[1]
            assert torch.allclose(torch.as_tensor(a), torch.as_tensor(b), atol=1e-5)
    assert stacked.member(0).curve("test", "loss")[1][-1] < stacked.member(0).curve("test", "loss")[1][0]


def test_label_noise_is_refused_for_next_token_targets():
    data = text.corpus(context=8, size=4_000)
    with pytest.raises(ValueError, match="next-token"):
        engine.run(lambda: TinyTransformer(96, context=8, width=8, depth=1, heads=2), data, [{}], steps=1,
                   noise_rate=0.1, progress=False)
