"""Mini-batches straight from device-resident tensors: an index permutation and a gather, no DataLoader."""

from __future__ import annotations

from typing import Iterator

import torch

from data.images import LabelledImages


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    # The last partial batch is dropped when training (a 1-image batch breaks BatchNorm).
    return max(1, n_images // batch_size)


def training_batches(part: LabelledImages, batch_size: int, generator: torch.Generator,
                     limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled full batches (a single smaller batch if the part is smaller than one), at most ``limit``."""
    order = torch.randperm(len(part), device=part.labels.device, generator=generator)
    size = min(batch_size, len(part))
    count = steps_per_epoch(len(part), batch_size)
    for step in range(count if limit is None else min(count, limit)):
        index = order[step * size:(step + 1) * size]
        yield part.images[index], part.labels[index]

