"""Squeeze-and-excitation (Hu et al., 2018): a block's channels scaled by weights computed from its output.

Global average pool -> FC -> ReLU -> FC -> sigmoid gives one weight per
channel. Used by ``models/se_prelu_net.py``; a module of its own because a
class deriving from ``nn.Module`` loads torch when it is defined, and the
model registry is read without torch (``hpo/core/lazy.py``).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(4, channels // reduction)
        self.weights = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, hidden),
                                     nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)[:, :, None, None]
