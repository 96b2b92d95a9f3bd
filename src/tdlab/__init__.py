"""tdlab: the shared library of the training-dynamics book.

Modules, one job each:

- :mod:`tdlab.data`     datasets as device-resident tensors (MNIST-1D, digits, modular arithmetic, ...)
- :mod:`tdlab.noise`    seeded label noise with the mask of corrupted examples
- :mod:`tdlab.models`   MLP, small CNNs, PreAct ResNet-18
- :mod:`tdlab.losses`   cross-entropy, ELR, ... (batched over a leading "member" axis)
- :mod:`tdlab.train`    one training loop over device tensors, returning a :class:`History`
- :mod:`tdlab.flat`     parameters in one flat buffer, and the optimizers (SGD, Adam, AdamW) that step it
- :mod:`tdlab.sweep`    many configurations trained at once (stacked parameters, one batched step)
- :mod:`tdlab.plots`    one visual style and the standard dynamics figures
- :mod:`tdlab.interact` widget panels around a pure ``run(**knobs)`` function
- :mod:`tdlab.augment`  batch transforms for the loop's ``batch_hook`` (crop/flip, mixup, CutMix)
- :mod:`tdlab.numerics` floating-point diagnostics: softmax in a chosen precision, Softmax Collapse
- :mod:`tdlab.optim`    optimizers beyond torch.optim (⊥Grad)
- :mod:`tdlab.history`  the tidy record of a run or a sweep: (member, step, split, metric, value)
- :mod:`tdlab.grokking` the phases of grokking with corrupted labels; :mod:`tdlab.fourier` the
  Fourier analysis and pruning of the modular-arithmetic network
- :mod:`tdlab.config`   the device, seeds and the book's environment variables
"""
from tdlab.config import device, env_scale, env_seed, set_seed
from tdlab.history import History

__version__ = "0.1.0"
__all__ = ["History", "device", "env_scale", "env_seed", "set_seed", "__version__"]
