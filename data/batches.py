"""Mini-batches of a split, whichever form it takes.

A split is either :class:`data.images.LabelledImages` (decoded, resident on
the device: a batch is an index permutation and a gather, no DataLoader) or
:class:`data.streaming.ImageFiles` (files on disk, read by DataLoader
workers). Both deliver uint8 batches for lists of positions, so the order and
composition of every batch depend only on the seed, not on the form.
"""

from __future__ import annotations

from typing import Iterator

import torch

EVAL_BATCH_SIZE = 1024


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    # The last partial batch is dropped when training (a 1-image batch breaks BatchNorm).
    return max(1, n_images // batch_size)


def training_batches(part, batch_size: int, generator: torch.Generator,
                     limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled full batches (a single smaller batch if the part is smaller than one), at most ``limit``."""
    order = torch.randperm(len(part), device=generator.device, generator=generator)
    size = min(batch_size, len(part))
    count = steps_per_epoch(len(part), batch_size)
    count = count if limit is None else min(count, limit)
    return part.batches(order[step * size:(step + 1) * size] for step in range(count))


def evaluation_batches(part, batch_size: int = EVAL_BATCH_SIZE) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every image once, in order."""
    return part.batches(torch.arange(len(part)).split(batch_size))
