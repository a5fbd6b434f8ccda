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


def labelled_from(part, what: str) -> LabelledImages:
    """A split the user's code or torchvision gives, as LabelledImages: an ``(images, labels)`` pair of tensors
    (images uint8 (N, C, H, W) or (N, H, W), or floats in [0, 1]), or a ``Dataset`` of (image, label) items
    whose images are PIL images or such tensors, all of one size. Raises ValueError naming ``what``."""
    if isinstance(part, (tuple, list)) and len(part) == 2 and all(isinstance(p, torch.Tensor) for p in part):
        images, labels = part
    else:
        try:
            items = [part[i] for i in range(len(part))]
        except TypeError:
            raise ValueError(f"{what}: expected a Dataset of (image, label) items or an (images, labels) pair of "
                             f"tensors, got a {type(part).__name__}") from None
        if not items:
            raise ValueError(f"{what}: holds no images")
        images = [_image_tensor(image, f"{what}[{i}]") for i, (image, _) in enumerate(items)]
        if len({tuple(i.shape) for i in images}) > 1:
            raise ValueError(f"{what}: images of several sizes ({', '.join(sorted({'x'.join(map(str, i.shape)) for i in images})[:3])}); resize them to one")
        images, labels = torch.stack(images), torch.as_tensor([int(label) for _, label in items])
    images = _image_tensor(images, what, batch=True)
    labels = torch.as_tensor(labels).long().reshape(-1)
    return LabelledImages(images.contiguous(), labels)


def _image_tensor(image, what: str, batch: bool = False) -> "torch.Tensor":
    """One image (or a batch) as uint8 (C, H, W) (or (N, C, H, W))."""
    if not isinstance(image, torch.Tensor):
        from torchvision.transforms.v2.functional import pil_to_tensor
        try:
            image = pil_to_tensor(image)
        except TypeError:
            raise ValueError(f"{what}: an image must be a PIL image or a tensor, got a {type(image).__name__}") \
                from None
    if image.is_floating_point():
        if image.numel() and (image.min() < 0 or image.max() > 1):
            raise ValueError(f"{what}: float images must lie in [0, 1] (before normalisation; hpo normalises), "
                             f"got values from {float(image.min()):g} to {float(image.max()):g}")
        image = image.mul(255).round().to(torch.uint8)
    elif image.dtype != torch.uint8:
        raise ValueError(f"{what}: images must be uint8 or floats in [0, 1], got {image.dtype}")
    wanted = 4 if batch else 3
    if image.ndim == wanted - 1:
        image = image.unsqueeze(-3)  # grey: one channel
    if image.ndim != wanted or image.shape[-3] not in (1, 3):
        raise ValueError(f"{what}: images must be {'(N, C, H, W)' if batch else '(C, H, W)'} with 1 or 3 "
                         f"channels, got shape {tuple(image.shape)}")
    return image
