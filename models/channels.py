"""Images with fewer channels than a network takes: repeated in front of it (grey -> RGB)."""

from __future__ import annotations

import torch
import torch.nn as nn


class RepeatChannels(nn.Module):
    """``network`` behind a repetition of the input's channels: a 1-channel image becomes 3 equal ones.

    The network's weights sit under ``network.`` in the state dict; its last Linear stays the model's last
    (the head-only fine-tuning phase finds it)."""

    def __init__(self, network: nn.Module, channels: int, wanted: int):
        super().__init__()
        if wanted % channels:
            raise ValueError(f"cannot repeat {channels}-channel images into {wanted} channels")
        self.network, self.times = network, wanted // channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.repeat(1, self.times, 1, 1))
