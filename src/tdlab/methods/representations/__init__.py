"""Representations (book/06_representations): the methods of its chapters.

- :mod:`tdlab.methods.representations.neural_collapse` — Neural collapse: the geometry of the last-layer features and classifier in the terminal phase.
- :mod:`tdlab.methods.representations.random_teachers` — Random teachers are good teachers (Sarnthein, Bachmann, Anagnostidis & Hofmann, ICML 2023).
"""
