"""Training stability (book/05_stability): the methods of its chapters.

- :mod:`tdlab.methods.stability.spam` — SPAM, Spike-Aware Adam with Momentum Reset (Huang et al., ICLR 2025; arXiv 2501.06842).
- :mod:`tdlab.methods.stability.spikes` — Gradient spikes: single gradient entries far above Adam's running estimate of their size.
- :mod:`tdlab.methods.stability.stability` — Small-scale proxies for Transformer training instabilities (Wortsman et al.
"""
