"""A tiny pre-LN decoder-only Transformer, for the stability chapters (Wortsman et al. 2023, §2.1).

The architecture of "Small-scale proxies for large-scale Transformer training instabilities"
(Wortsman et al. 2023, arXiv 2309.14322, §2.1) at toy size:

- token embedding + a learned position embedding (the paper uses rotary embeddings);
- ``depth`` pre-LN blocks, h ← h + Attn(LN(h)), h ← h + MLP(LN(h)), with causal multi-head
  attention and an MLP of width 4d with GELU;
- optional **qk-layernorm**: a LayerNorm on every head's query and key before the dot product,
  its scale shared by the heads (the paper's Fig. E.8);
- a final LayerNorm and an untied output head; no biases and LayerNorm ε = 1e-6 by default, as
  the paper; embeddings drawn from N(0, 1/d), other weights from a truncated normal with std
  1/√fan-in.

Input: integer tokens (B, T) with T ≤ ``context``; output: logits (B, T, V), position t
predicting token t + 1. The attention logits of head h in a block are

.. math::
    z_{ij} = \\frac{\\langle q_i, k_j\\rangle}{\\sqrt{d_h}},\\quad j \\le i,

and :func:`attention_stats` recomputes, from parameters and inputs, their maximum (the
paper's "max attention logit") and the entropy of each row softmax(z_i·) (its "attention
entropy collapse").

All of it is written once, for E stacked members: :meth:`TinyTransformer.forward_stacked`
takes parameters with a leading member axis (what :class:`tdlab.core.engine.Stacked` trains) and
:meth:`TinyTransformer.forward` is its E = 1 case, so a stacked sweep and separate runs compute
the same numbers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tdlab.core.config import check_range

LN_EPS = 1e-6     # the paper's LayerNorm ε


def _truncated_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """N(0, std²) truncated at ±2 std (the paper's "truncated normal with std 1/√fan-in")."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


def _linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """h Wᵀ (+ b) for every member: ``h`` (E, ..., in), ``weight`` (E, out, in) → (E, ..., out)."""
    members, shape = h.shape[0], h.shape[1:-1]
    flat = h.reshape(members, -1, h.shape[-1])
    out = (torch.bmm(flat, weight.transpose(1, 2)) if bias is None
           else torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2)))
    return out.reshape(members, *shape, weight.shape[1])


def _layer_norm(h: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """LayerNorm over the last axis with a per-member scale (and bias): ``h`` (E, ..., d), ``scale`` (E, d)."""
    view = (h.shape[0],) + (1,) * (h.dim() - 2) + (h.shape[-1],)
    out = F.layer_norm(h, h.shape[-1:], eps=LN_EPS) * scale.reshape(view)
    return out if bias is None else out + bias.reshape(view)


def causal_mask(length: int, device=None) -> torch.Tensor:
    """(T, T) boolean, True where key j is in the future of query i (j > i): the entries masked out."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


class Block(nn.Module):
    """One pre-LN block's parameters (its computation is :meth:`TinyTransformer.forward_stacked`)."""

    def __init__(self, width: int, heads: int, qk_layernorm: bool, bias: bool, mlp_ratio: int):
        super().__init__()
        head_dim = width // heads
        self.ln1_scale = nn.Parameter(torch.ones(width))
        self.qkv = nn.Parameter(_truncated_normal_(torch.empty(3 * width, width), 1 / math.sqrt(width)))
        self.proj = nn.Parameter(_truncated_normal_(torch.empty(width, width), 1 / math.sqrt(width)))
        self.ln2_scale = nn.Parameter(torch.ones(width))
        self.fc1 = nn.Parameter(_truncated_normal_(torch.empty(mlp_ratio * width, width), 1 / math.sqrt(width)))
        self.fc2 = nn.Parameter(_truncated_normal_(torch.empty(width, mlp_ratio * width),
                                                   1 / math.sqrt(mlp_ratio * width)))
        if qk_layernorm:       # one scale per head dimension, shared by the heads (Fig. E.8)
            self.q_scale = nn.Parameter(torch.ones(head_dim))
            self.k_scale = nn.Parameter(torch.ones(head_dim))
        if bias:
            self.ln1_bias = nn.Parameter(torch.zeros(width))
            self.qkv_bias = nn.Parameter(torch.zeros(3 * width))
            self.proj_bias = nn.Parameter(torch.zeros(width))
            self.ln2_bias = nn.Parameter(torch.zeros(width))
            self.fc1_bias = nn.Parameter(torch.zeros(mlp_ratio * width))
            self.fc2_bias = nn.Parameter(torch.zeros(width))
            if qk_layernorm:
                self.q_bias = nn.Parameter(torch.zeros(head_dim))
                self.k_bias = nn.Parameter(torch.zeros(head_dim))


class TinyTransformer(nn.Module):
    """A pre-LN decoder-only Transformer: tokens (B, T) → next-token logits (B, T, V).

    - ``vocab``: V; ``context``: the longest sequence (learned positions); ``width``: d;
      ``depth``: blocks; ``heads``: attention heads (d_h = d / heads);
    - ``qk_layernorm``: LayerNorm on each head's q and k before q·k (Wortsman et al. 2023, §3.1.2);
    - ``bias``: biases in the linear maps and LayerNorms (the paper has none); ``mlp_ratio``: MLP
      width / d (4).
    """

    def __init__(self, vocab: int, context: int = 32, width: int = 32, depth: int = 2, heads: int = 2,
                 qk_layernorm: bool = False, bias: bool = False, mlp_ratio: int = 4):
        super().__init__()
        for name, value in (("vocab", vocab), ("context", context), ("width", width), ("depth", depth),
                            ("heads", heads), ("mlp_ratio", mlp_ratio)):
            check_range(name, value, 1)
        if width % heads:
            raise ValueError(f"width {width} must be a multiple of heads {heads}")
        self.vocab, self.context, self.width, self.depth, self.heads = vocab, context, width, depth, heads
        self.head_dim = width // heads
        self.qk_layernorm, self.bias = bool(qk_layernorm), bool(bias)
        self.tok = nn.Parameter(torch.randn(vocab, width) / math.sqrt(width))      # N(0, 1/d)
        self.pos = nn.Parameter(torch.randn(context, width) / math.sqrt(width))
        self.blocks = nn.ModuleList(Block(width, heads, qk_layernorm, bias, mlp_ratio) for _ in range(depth))
        self.ln_f_scale = nn.Parameter(torch.ones(width))
        if bias:
            self.ln_f_bias = nn.Parameter(torch.zeros(width))
        self.head = nn.Parameter(_truncated_normal_(torch.empty(vocab, width), 1 / math.sqrt(width)))

    # ------------------------------------------------------------------ the computation
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for tokens ``x`` (B, T): :meth:`forward_stacked` with one member."""
        params = {name: p.unsqueeze(0) for name, p in self.named_parameters()}
        return self.forward_stacked(params, x)[0]

    def forward_stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor,
                        stats: list | None = None) -> torch.Tensor:
        """E Transformers of this shape at once: ``params[name]`` stacked to (E, ...), tokens ``x``
        (B, T) shared → logits (E, B, T, V). With a list ``stats``, every block appends the
        attention statistics of :func:`attention_stats` for its layer."""
        x = x.long()
        if x.dim() != 2:
            raise ValueError(f"a TinyTransformer takes tokens of shape (B, T), got {tuple(x.shape)}")
        length = x.shape[1]
        if length > self.context:
            raise ValueError(f"sequence length {length} exceeds the context {self.context}")
        get = params.get
        h = params["tok"][:, x] + params["pos"][:, None, :length]                  # (E, B, T, d)
        members, batch = h.shape[0], x.shape[0]
        mask = causal_mask(length, x.device)
        for index in range(self.depth):
            p = lambda name: get(f"blocks.{index}.{name}")                          # noqa: E731
            a = _layer_norm(h, p("ln1_scale"), p("ln1_bias"))
            qkv = _linear(a, p("qkv"), p("qkv_bias"))                                # (E, B, T, 3d)
            qkv = qkv.reshape(members, batch, length, 3, self.heads, self.head_dim).permute(3, 0, 1, 4, 2, 5)
            q, k, v = qkv[0], qkv[1], qkv[2]                                         # (E, B, H, T, d_h)
            if self.qk_layernorm:
                q = _layer_norm(q, p("q_scale"), p("q_bias"))
                k = _layer_norm(k, p("k_scale"), p("k_bias"))
            logits = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)   # z_ij = q_i·k_j / √d_h
            logits = logits.masked_fill(mask, float("-inf"))
            attention = torch.softmax(logits, dim=-1)
            if stats is not None:
                stats.append(_stats(logits, attention, mask))
            out = torch.matmul(attention, v).transpose(2, 3).reshape(members, batch, length, self.width)
            h = h + _linear(out, p("proj"), p("proj_bias"))
            a = _layer_norm(h, p("ln2_scale"), p("ln2_bias"))
            h = h + _linear(F.gelu(_linear(a, p("fc1"), p("fc1_bias"))), p("fc2"), p("fc2_bias"))
        h = _layer_norm(h, params["ln_f_scale"], get("ln_f_bias"))
        return _linear(h, params["head"])                                            # (E, B, T, V)


def _stats(logits: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per member: the largest unmasked attention logit and the mean entropy of the attention rows."""
    z = logits.detach()
    members = z.shape[0]
    largest = z.masked_fill(mask, float("-inf")).reshape(members, -1).amax(-1)
    p = attention.detach()
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)                         # H_i = −Σ_j p_ij log p_ij
    return {"max_logit": largest, "entropy": entropy.reshape(members, -1).mean(-1)}


@torch.no_grad()
def attention_stats(model: TinyTransformer, x: torch.Tensor,
                    params: dict[str, torch.Tensor] | None = None) -> list[dict[str, torch.Tensor]]:
    """The attention statistics of every block on tokens ``x`` (B, T), one dict per block:

    - ``max_logit`` (E,): max over examples, heads and unmasked (i, j) of z_ij = q_i·k_j/√d_h
      (Wortsman et al. 2023 track it in block 0);
    - ``entropy`` (E,): the mean over examples, heads and query positions i of
      H_i = −Σ_{j≤i} p_ij log p_ij, p_i = softmax(z_i) (nats; 0 when attention is one-hot).

    ``params`` stacked to (E, ...) (as :meth:`tdlab.core.monitors.Evaluation.stacked_parameters`
    gives them); ``None`` reads the model's own, E = 1.
    """
    if params is None:
        params = {name: p.detach().unsqueeze(0) for name, p in model.named_parameters()}
    stats: list = []
    model.forward_stacked(params, x, stats=stats)
    return stats
