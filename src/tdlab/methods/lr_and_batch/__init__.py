"""Learning rate and batch size (book/04_lr_and_batch): the methods of its chapters.

- :mod:`tdlab.methods.lr_and_batch.annealing_law` — The scaling law with learning-rate annealing (Tissue, Wang & Wang 2024, arXiv:2408.11029).
- :mod:`tdlab.methods.lr_and_batch.large_batch` — Large-batch training as Hoffer, Hubara & Soudry (NeurIPS 2017) fix it: "Train longer, generalize better".
- :mod:`tdlab.methods.lr_and_batch.sgd_noise` — SGD noise in the lazy and the feature-learning regimes: the α-trick of Sclocchi, Geiger & Wyart (ICML 2023, …
"""
