"""Batch transforms for the training loop's ``batch_hook``: they take and return a
:class:`tdlab.train.Batch` and run on the device, on whole batches.

- :func:`crop_flip` — random crop with zero padding and horizontal flip, the CIFAR
  augmentation of ELR, mixup and CutMix (``RandomCrop(32, padding=4)`` +
  ``RandomHorizontalFlip``), as one gather per batch.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from tdlab.config import check_range


def crop_flip(padding: int = 4, flip: bool = True, seed: int = 0):
    """A batch hook: pad by ``padding`` zeros, crop back at a random offset, flip half the images."""
    check_range("padding", padding, 0)
    generator: dict[str, torch.Generator] = {}

    def hook(batch):
        x = batch.x
        if x.dim() != 4:
            raise ValueError(f"crop_flip needs image batches (B, C, H, W), got shape {tuple(x.shape)}")
        gen = generator.setdefault("g", torch.Generator(device=x.device).manual_seed(seed))
        n, _, height, width = x.shape
        padded = F.pad(x, (padding,) * 4)
        top = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=x.device)
        left = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=x.device)
        rows = (top[:, None] + torch.arange(height, device=x.device))[:, :, None]     # (B, H, 1)
        cols = (left[:, None] + torch.arange(width, device=x.device))[:, None, :]     # (B, 1, W)
        if flip:
            mirrored = torch.rand(n, generator=gen, device=x.device) < 0.5
            cols = torch.where(mirrored[:, None, None], cols.flip(-1), cols)
        images = torch.arange(n, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[images, rows, cols].permute(0, 3, 1, 2)
        return dataclasses.replace(batch, x=out.contiguous())

    return hook
