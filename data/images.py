"""Labelled images held as one uint8 tensor, the form every split takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from hpo.core.lazy import lazy

torch = lazy("torch")


@dataclass(frozen=True)
class LabelledImages:
    """``images``: uint8 (N, C, H, W); ``labels``: int64 (N,).

    uint8 is four times smaller than float32 and converting a batch on the fly
    costs less than reading preprocessed floats (airbench's observation).
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:])

    def subset(self, index) -> "LabelledImages":
        index = torch.as_tensor(index, dtype=torch.long)
        return LabelledImages(self.images[index], self.labels[index])

    def to(self, device) -> "LabelledImages":
        return LabelledImages(self.images.to(device), self.labels.to(device))

    @staticmethod
    def concat(parts: list["LabelledImages"]) -> "LabelledImages":
        return LabelledImages(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))

    def batches(self, index_batches: Iterable[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Images and labels for each batch of positions: a gather where the tensors live, no copies."""
        for index in index_batches:
            index = index.to(self.labels.device)
            yield self.images[index], self.labels[index]


@dataclass(frozen=True)
class DataSource:
    """What a data set loader returns: a pool to split, its own test (and validation) part if it has one,
    and its usual normalisation statistics if it has them (else they are measured on the train split)."""

    pool: LabelledImages
    class_names: tuple[str, ...]
    test: LabelledImages | None = None
    val: LabelledImages | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
