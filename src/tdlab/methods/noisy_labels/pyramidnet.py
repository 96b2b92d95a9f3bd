"""PyramidNet (Han, Kim & Kim, CVPR 2017) for 32×32 images: the CutMix paper's CIFAR network.

A pyramidal residual network widens by the same number of channels at every block instead of
doubling them at each stage: with ``depth`` layers and bottleneck blocks there are
n = (depth − 2) / 9 blocks per stage (three stages, at 32, 16 and 8 pixels), and the k-th block
has round(16 + k·α / 3n) channels inside it and four times as many at its output. Each block is
BN → 1×1 conv → BN → ReLU → 3×3 conv (stride 2 at a stage's first block) → BN → ReLU → 1×1 conv
→ BN, with no ReLU after the addition; the shortcut is the input, average-pooled 2×2 where the
block halves the image, with zero channels appended where the block widens. The CutMix paper's
CIFAR model is ``PyramidNet(depth=200, alpha=240)`` (26.8M parameters for 100 classes).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

EXPANSION = 4   # a bottleneck block's output has four times its inner channels


class Bottleneck(nn.Module):
    """One pyramidal bottleneck block (pre-activation order, no ReLU after the sum)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels * EXPANSION, 1, bias=False),
            nn.BatchNorm2d(channels * EXPANSION))

    def forward(self, x):
        out = self.body(x)
        shortcut = F.avg_pool2d(x, 2, ceil_mode=True) if self.stride != 1 else x
        missing = out.shape[1] - shortcut.shape[1]
        if missing > 0:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, missing))   # zero channels appended
        return out + shortcut


class PyramidNet(nn.Module):
    """A bottleneck PyramidNet for 32×32 inputs (``depth`` = 9n + 2, widening ``alpha``)."""

    def __init__(self, depth: int = 200, alpha: float = 240, num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 9:
            raise ValueError(f"a bottleneck PyramidNet has depth 9n + 2, not {depth}")
        n = (depth - 2) // 9
        step = alpha / (3 * n)
        self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn_in = nn.BatchNorm2d(16)
        blocks, width, channels_in = [], 16.0, 16
        for stage in range(3):
            for i in range(n):
                width += step
                blocks.append(Bottleneck(channels_in, int(round(width)), 2 if stage and i == 0 else 1))
                channels_in = int(round(width)) * EXPANSION
        self.blocks = nn.Sequential(*blocks)
        self.bn_out = nn.BatchNorm2d(channels_in)
        self.head = nn.Linear(channels_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):      # He initialisation by fan-out, as the reference code
                m.weight.data.normal_(0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def forward(self, x):
        out = self.blocks(self.bn_in(self.conv(x)))
        out = torch.relu(self.bn_out(out))
        return self.head(out.mean(dim=(-2, -1)))


def pyramidnet200(num_classes: int = 100) -> PyramidNet:
    """The CutMix paper's CIFAR network: PyramidNet-200, α = 240, bottleneck blocks."""
    return PyramidNet(depth=200, alpha=240, num_classes=num_classes)
