"""Grokking (book/02_grokking): the methods of its chapters.

- :mod:`tdlab.methods.grokking.local_complexity` — Local complexity and the PGD attack of Humayun, Balestriero & Baraniuk (ICML 2024), "Deep Networks Always Grok …
- :mod:`tdlab.methods.grokking.grokking` — The phases of grokking with corrupted labels (Doshi, Das, He & Gromov 2023).
- :mod:`tdlab.methods.grokking.numerics` — Floating-point limits of the softmax: Softmax Collapse and the logit gaps that cause it.
- :mod:`tdlab.methods.grokking.fourier` — Fourier analysis of the modular-arithmetic network's neurons, and pruning by it.
- :mod:`tdlab.methods.grokking.kernels` — Neural tangent kernels as measurements: the kernel of a network, kernel regression with it, how well it aligns …
"""
