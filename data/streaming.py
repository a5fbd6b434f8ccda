"""Image files streamed through DataLoader workers: the path for folders too large to hold decoded.

A folder whose decoded images would not fit in memory (ImageNet's 1.28
million training images are 180 GiB at 224 px) stays on disk. Batches are
read by DataLoader workers that persist across epochs and trials, prefetch
ahead of the step and hand pinned memory to a GPU. Each file is decoded

- in the workers with PIL, exactly as the resident loader decodes it
  (``decode: workers``), or
- on the training device with ``torchvision.io.decode_jpeg`` (nvJPEG on a
  GPU): the workers only read the files' bytes (``decode: device``).

``decode: auto`` decodes on the device when it is a GPU and every file is a
JPEG. Either way a batch reaches the trainer as uint8 (N, C, H, W) on the
device, like a batch of the resident path, and is augmented by the same
batched code (``data/transforms.py``): for a fixed seed both paths train on
the same images in the same order with the same augmentation draws.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data.decoding import JPEG_SUFFIXES, decode_file, decode_jpeg_batch
from data.errors import DataError
from data.images import LabelledImages

PREFETCH_BATCHES = 2  # per worker, so workers x 2 batches wait ready; more only costs shared memory


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


class _Files(Dataset):
    """Item i: (uint8 image, label) decoded in the worker, or (the file's bytes, label) with ``raw``."""

    def __init__(self, table: "FileTable", raw: bool):
        self.paths, self.labels, self.mode, self.size, self.raw = (
            table.paths, table.labels, table.mode, table.size, raw)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        if self.raw:  # plain bytes: tensors of many sizes would each need a shared-memory handle
            with open(path, "rb") as f:
                return f.read(), self.labels[i]
        return decode_file(path, self.mode, self.size), self.labels[i]


def _from_worker(err: DataError) -> DataError:
    """The error a worker raised, as it raised it. DataLoader re-raises ``DataError(worker's traceback)``,
    which would print the traceback as the message; its last line is ``data.errors.DataError: <message>``."""
    last = err.message.strip().splitlines()[-1]
    prefix = f"{DataError.__module__}.{DataError.__qualname__}: "
    return DataError(last.removeprefix(prefix)) if last.startswith(prefix) else err


def _collate_raw(items):
    return [data for data, _ in items], torch.stack([label for _, label in items])


class _BatchOrder(Sampler):
    """The batches (lists of table rows) of the next pass: set before each ``iter(loader)``, so one
    persistent loader serves every epoch, part and batch size."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@dataclass(frozen=True)
class FileTable:
    """Every file of a folder and how to decode it. The parts (train, val, test) index into one table and
    share its DataLoader workers; one pass at a time (the trainer never interleaves two)."""

    paths: tuple[str, ...]
    labels: torch.Tensor  # int64, on the CPU
    mode: str  # PIL mode of the decoded images: "L" or "RGB"
    size: int | None  # shorter side resized to this and centre-cropped; None: the files share one size
    image_size: tuple[int, int]
    workers: int
    decode: str  # one of data.folder.DECODERS
    _loaders: dict = field(default_factory=dict, compare=False, repr=False)

    @functools.cached_property
    def all_jpeg(self) -> bool:  # once per table, not per pass: ImageNet has 1.28 million paths
        return all(p.lower().endswith(JPEG_SUFFIXES) for p in self.paths)

    def decodes_on(self, device: torch.device) -> str:
        if self.decode != "auto":
            return self.decode
        return "device" if device.type == "cuda" and self.all_jpeg else "workers"

    def loader(self, device: torch.device, raw: bool) -> tuple[DataLoader, _BatchOrder]:
        key = (str(device), raw)
        if key not in self._loaders:
            order = _BatchOrder()
            loader = DataLoader(
                _Files(self, raw), batch_sampler=order, num_workers=self.workers,
                collate_fn=_collate_raw if raw else None,
                pin_memory=device.type == "cuda",  # pinned pages copy to the GPU asynchronously
                persistent_workers=self.workers > 0,  # no start-up cost per epoch or per trial
                prefetch_factor=PREFETCH_BATCHES if self.workers > 0 else None)
            self._loaders[key] = (loader, order)
        return self._loaders[key]


@dataclass(frozen=True)
class ImageFiles:
    """A split held as rows of a :class:`FileTable`: the streaming counterpart of LabelledImages, with the
    same interface (len, labels, channels, image_size, subset, concat, to, batches)."""

    table: FileTable
    index: torch.Tensor  # int64 rows of the table
    device: torch.device = torch.device("cpu")  # where batches are delivered

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labels(self) -> torch.Tensor:
        return self.table.labels[self.index]

    @property
    def channels(self) -> int:
        return 1 if self.table.mode == "L" else 3

    @property
    def image_size(self) -> tuple[int, int]:
        return self.table.image_size

    def subset(self, index) -> "ImageFiles":
        return ImageFiles(self.table, self.index[torch.as_tensor(index, dtype=torch.long)], self.device)

    def to(self, device) -> "ImageFiles":
        return ImageFiles(self.table, self.index, torch.device(device))

    @staticmethod
    def concat(parts: list["ImageFiles"]) -> "ImageFiles":
        if any(p.table is not parts[0].table for p in parts):
            raise ValueError("only parts of one folder can be concatenated")
        return ImageFiles(parts[0].table, torch.cat([p.index for p in parts]), parts[0].device)

    def batches(self, index_batches: Iterable[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 images and labels on the device for each batch of positions in this part."""
        on_device = self.table.decodes_on(self.device) == "device"
        loader, order = self.table.loader(self.device, raw=on_device)
        order.batches = [self.index[batch.cpu()].tolist() for batch in index_batches]
        try:
            for rows, (images, labels) in zip(order.batches, loader):
                if on_device:
                    paths = [self.table.paths[row] for row in rows]
                    images = decode_jpeg_batch(images, paths, self.table.mode, self.table.size, self.device)
                else:
                    images = images.to(self.device, non_blocking=True)
                yield images, labels.to(self.device, non_blocking=True)
        except DataError as err:  # a file that passed the header scan but does not decode
            raise _from_worker(err) from None

    def load(self) -> LabelledImages:
        """Every image of this part decoded into memory (for statistics on a sample, and for tests)."""
        positions = torch.arange(len(self))
        images, labels = zip(*self.to("cpu").batches(positions.split(256)))
        return LabelledImages(torch.cat(images), torch.cat(labels))
