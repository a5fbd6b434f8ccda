"""Train / validation / test splits, stratified and fixed by ``split_seed``.

The test split is carved out first (unless the data set ships its own) and is
never seen by a trial: trials train on ``train`` and are scored on ``val``;
only the retrain of the best trial trains on train+val and is scored, once,
on ``test``. The split does not depend on the study seed, so every study on
the same data shares one test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from data import DATASETS
from data.images import LabelledImages


@dataclass(frozen=True)
class Splits:
    train: LabelledImages
    val: LabelledImages
    test: LabelledImages
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, on the 0..1 scale, measured on ``train``
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.train.channels

    @property
    def image_size(self) -> tuple[int, int]:
        return self.train.image_size

    def train_and_val(self) -> LabelledImages:
        return LabelledImages.concat([self.train, self.val])


def stratified_split(part: LabelledImages, fraction: float, seed: int) -> tuple[LabelledImages, LabelledImages]:
    """Split off ``fraction`` of ``part`` with every class in proportion (scikit-learn)."""
    from sklearn.model_selection import train_test_split

    index = torch.arange(len(part)).numpy()
    keep, held_out = train_test_split(index, test_size=fraction, random_state=seed,
                                      stratify=part.labels.numpy())
    return part.subset(keep), part.subset(held_out)


def channel_stats(part: LabelledImages) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pixels = part.images.to(torch.float64).div_(255.0)
    mean = pixels.mean(dim=(0, 2, 3))
    std = pixels.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


def load_splits(name: str, args: Mapping[str, Any], val_fraction: float,
                test_fraction: float, split_seed: int) -> Splits:
    source = DATASETS.get(name)(**args)
    if source.test is not None:
        pool, test = source.pool, source.test
    else:
        pool, test = stratified_split(source.pool, test_fraction, split_seed)
    train, val = stratified_split(pool, val_fraction, split_seed)
    mean, std = channel_stats(train)
    return Splits(train, val, test, source.class_names, mean, std)
