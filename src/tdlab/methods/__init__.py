"""tdlab.methods: the papers' methods, one folder per part of the book (the folder of `book/<NN>_<part>/`).

- :mod:`tdlab.methods.noisy_labels` — Noisy labels (book/01_noisy_labels): nested, coteaching, calibration, pyramidnet
- :mod:`tdlab.methods.grokking` — Grokking (book/02_grokking): local_complexity, grokking, numerics, fourier, kernels
- :mod:`tdlab.methods.regularization` — Regularization (book/03_regularization): multisample, compander
- :mod:`tdlab.methods.lr_and_batch` — Learning rate and batch size (book/04_lr_and_batch): sgd_noise, annealing_law, large_batch
- :mod:`tdlab.methods.stability` — Training stability (book/05_stability): stability, spikes
- :mod:`tdlab.methods.representations` — Representations (book/06_representations): random_teachers, neural_collapse
- :mod:`tdlab.methods.sparse_training` — Sparse training (book/07_sparse_training): sparsity
- :mod:`tdlab.methods.continual` — Continual learning (book/08_continual): continual
"""
