"""Continual learning (book/08_continual): the methods of its chapters.

- :mod:`tdlab.methods.continual.continual` — Class-incremental learning with experience replay, evaluated continually.
"""
