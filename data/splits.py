"""Train / validation / test splits, stratified and fixed by ``split_seed``.

The test split is carved out first (unless the data set ships its own) and is
never seen by a trial: trials train on ``train`` and are scored on ``val``;
only the retrain of the best trial trains on train+val and is scored, once,
on ``test``. The split does not depend on the study seed, so every study on
the same data shares one test split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from hpo.data import load_source
from hpo.data.errors import DataError
from hpo.core.lazy import lazy

torch = lazy("torch")

if TYPE_CHECKING:
    from hpo.data.images import LabelledImages
    from hpo.data.streaming import ImageFiles

    Part = LabelledImages | ImageFiles  # decoded in memory, or streamed from disk (data/streaming.py)


@dataclass(frozen=True)
class Splits:
    train: Part
    val: Part
    test: Part
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

    def train_and_val(self) -> Part:
        return type(self.train).concat([self.train, self.val])

    def to(self, device) -> "Splits":
        """Every split on ``device``, once: on a GPU every trial then reads its batches from there
        (streamed splits stay on disk and deliver their batches there)."""
        return dataclasses.replace(self, train=self.train.to(device), val=self.val.to(device),
                                   test=self.test.to(device))


def stratified_split(part: Part, fraction: float, seed: int, field: str,
                     class_names: tuple[str, ...]) -> tuple[Part, Part]:
    """Split off ``fraction`` of ``part`` with every class in proportion (scikit-learn); every class must
    keep images on both sides (``field`` names the fraction in the error that says otherwise)."""
    from sklearn.model_selection import train_test_split

    counts = torch.bincount(part.labels, minlength=len(class_names))
    index = torch.arange(len(part)).numpy()
    try:
        keep, held_out = train_test_split(index, test_size=fraction, random_state=seed,
                                          stratify=part.labels.numpy())
    except ValueError as err:  # e.g. a class of one image, or fewer held-out images than classes
        raise _split_error(counts, class_names, fraction, field, str(err).splitlines()[0]) from None
    for side in (keep, held_out):
        present = torch.bincount(part.labels[torch.as_tensor(side)], minlength=len(class_names))
        if bool((present == 0).any()):
            raise _split_error(counts, class_names, fraction, field, "a class would be left without images")
    return part.subset(keep), part.subset(held_out)


def _split_error(counts: torch.Tensor, class_names, fraction: float, field: str, why: str) -> DataError:
    smallest = int(counts.argmin())
    return DataError(f"cannot hold out {fraction:g} of {int(counts.sum())} images of {len(class_names)} classes "
                     f"with every class on both sides ({why}); the smallest class, {class_names[smallest]!r}, has "
                     f"{int(counts[smallest])} image(s): give each class more images or change {field}", field)


STATS_SAMPLE = 5000  # images of a streamed split decoded to measure its statistics (on CIFAR-10 three samples
# were within 0.004 of the full set's mean and 0.002 of its std)


def channel_stats(part: Part, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the 0..1 scale, in chunks (float64 sums, no full float copy); on a
    fixed random sample of a streamed split."""
    from hpo.data.streaming import ImageFiles

    if isinstance(part, ImageFiles):
        sample = torch.randperm(len(part), generator=torch.Generator().manual_seed(0))[:STATS_SAMPLE]
        part = part.subset(sample.sort().values).load()
    total = torch.zeros(part.channels, dtype=torch.float64)
    squares = torch.zeros(part.channels, dtype=torch.float64)
    for start in range(0, len(part), chunk):
        pixels = part.images[start:start + chunk].to(torch.float64).div_(255.0)
        total += pixels.sum(dim=(0, 2, 3))
        squares += pixels.square().sum(dim=(0, 2, 3))
    count = len(part) * part.image_size[0] * part.image_size[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


# ``data.normalize``: whose statistics normalise the images.
NORMALIZATIONS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # write-up 002 uses these on CIFAR-100
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # write-up 004: mean = std = 0.5
}


def load_splits(name: str, args: Mapping[str, Any], val_fraction: float, test_fraction: float,
                split_seed: int, normalize: str = "auto") -> Splits:
    """``normalize``: ``auto`` (the data set's usual statistics, else measured on train), ``measured``,
    ``imagenet`` or ``half``."""
    source = load_source(name, dict(args))
    names = source.class_names
    if len(names) < 2:
        raise DataError(f"the data set has {len(names)} class ({', '.join(map(repr, names)) or 'none'}) with "
                        f"{len(source.pool)} images; a classifier needs at least two classes", "data")
    empty = [name for name, count in zip(names, torch.bincount(source.pool.labels, minlength=len(names)))
             if count == 0]
    if empty:
        raise DataError(f"class {empty[0]!r} has no images ({len(empty)} of {len(names)} classes are empty: an "
                        f"empty folder?); remove it or put images in it", "data")
    if source.test is not None:
        pool, test = source.pool, source.test
    else:
        pool, test = stratified_split(source.pool, test_fraction, split_seed, "data.test_fraction", names)
    if source.val is not None:
        train, val = pool, source.val
    else:
        train, val = stratified_split(pool, val_fraction, split_seed, "data.val_fraction", names)
    if normalize in NORMALIZATIONS:
        mean, std = NORMALIZATIONS[normalize]
        if train.channels == 1:
            mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    elif normalize == "auto" and source.mean is not None and len(source.mean) == train.channels:
        mean, std = source.mean, source.std
    else:
        mean, std = channel_stats(train)
    return Splits(train, val, test, source.class_names, mean, std)
