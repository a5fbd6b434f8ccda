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

A worker that dies (the kernel's OOM killer sends SIGKILL) ends the pass
that reads from it with :class:`WorkerDied`, one line naming its pid and the
signal; its loader is dropped, so the next pass (the next trial's) starts
new workers.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing.connection
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from hpo.data.decoding import JPEG_SUFFIXES, decode_file, decode_jpeg_batch
from hpo.data.errors import DataError, DataFailed
from hpo.data.images import LabelledImages

PREFETCH_BATCHES = 2  # per worker, so workers x 2 batches wait ready; more only costs shared memory
DEATH_WAIT_S = 1.0  # after a failed read (a connection reset, torch's "exited unexpectedly"): for a worker to end


class WorkerDied(DataFailed):
    """A DataLoader worker that ended while its loader was in use: killed by a signal, or exited."""


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


def _ended_workers(loader: DataLoader, wait_s: float = 0.0) -> list:
    """The loader's worker processes that have ended, waiting up to ``wait_s`` for one to end. torch keeps a
    persistent loader's iterator, and in it the workers, in private attributes (the same since torch 1.7)."""
    workers = loader._iterator._workers if loader._iterator is not None else []
    if not workers:
        return []
    ended = multiprocessing.connection.wait([w.sentinel for w in workers], timeout=wait_s)
    for worker in workers:
        if worker.sentinel in ended:  # closed as the process exits, a moment before its exit status is there
            worker.join()
    return [w for w in workers if w.sentinel in ended]


def _death(ended: list) -> str:
    """How the first ended worker ended, as one line with what to do."""
    code = ended[0].exitcode
    more = f" ({len(ended) - 1} more ended too)" if len(ended) > 1 else ""
    if code >= 0:
        return f"a DataLoader worker (pid {ended[0].pid}) exited with code {code}{more}"
    name = signal.Signals(-code).name
    hint = {"SIGKILL": "; the kernel's OOM killer sends it when memory runs out (dmesg says whether it did): "
                       "fewer data.workers or a smaller batch_size need less",
            "SIGBUS": "; workers hand batches over in shared memory (/dev/shm), which may be full: enlarge it or "
                      "use fewer data.workers"}.get(name, "")
    return f"a DataLoader worker (pid {ended[0].pid}) was killed by signal {name}{more}{hint}"


def _quiet_worker_deaths() -> None:
    """torch's SIGCHLD handler raises a worker's death in the main thread wherever that thread is at the
    moment: writing a trial's result, between two trials, or halfway through receiving a batch from another
    worker (which then prints the traceback of its broken connection). Wrapped, it raises nothing; ``_read``
    finds the death before the next read, or when torch, waiting for the dead worker's batch, looks at its
    workers (every MP_STATUS_CHECK_INTERVAL, 5 s)."""
    handler = signal.getsignal(signal.SIGCHLD)  # torch's, set by the first iter() of a loader with workers
    if getattr(handler, "__module__", None) != "torch.utils.data._utils.signal_handling" \
            or threading.current_thread() is not threading.main_thread():
        return  # not torch's (none, or already wrapped), or no signal handler can be set from here

    def quiet(signum, frame):
        with contextlib.suppress(RuntimeError):
            handler(signum, frame)

    signal.signal(signal.SIGCHLD, quiet)


def _read(loader: DataLoader) -> Iterator:
    """The loader's batches; a worker that has ended raises WorkerDied here, before or during a read."""
    iterator = None
    while True:
        ended = _ended_workers(loader)
        if ended:
            raise WorkerDied(_death(ended))
        try:
            if iterator is None:
                iterator = iter(loader)
                _quiet_worker_deaths()
            batch = next(iterator)
        except StopIteration:
            return
        except (RuntimeError, ConnectionError, EOFError):  # "DataLoader worker (pid(s) N) exited unexpectedly", or
            ended = _ended_workers(loader, DEATH_WAIT_S)  # the connection a killed worker was sending a batch through
            if not ended:
                raise
        if ended:
            raise WorkerDied(_death(ended))
        yield batch


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

    def drop_loader(self, device: torch.device, raw: bool) -> None:
        """Forget a loader whose worker died: its persistent iterator would wait for that worker on every
        pass. Its other workers are stopped when it is garbage."""
        self._loaders.pop((str(device), raw), None)


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
            for rows, (images, labels) in zip(order.batches, _read(loader)):
                if on_device:
                    paths = [self.table.paths[row] for row in rows]
                    images = decode_jpeg_batch(images, paths, self.table.mode, self.table.size, self.device)
                else:
                    images = images.to(self.device, non_blocking=True)
                yield images, labels.to(self.device, non_blocking=True)
        except DataError as err:  # a file that passed the header scan but does not decode
            raise _from_worker(err) from None
        except WorkerDied:
            self.table.drop_loader(self.device, raw=on_device)
            raise

    def load(self) -> LabelledImages:
        """Every image of this part decoded into memory (for statistics on a sample, and for tests)."""
        positions = torch.arange(len(self))
        images, labels = zip(*self.to("cpu").batches(positions.split(256)))
        return LabelledImages(torch.cat(images), torch.cat(labels))
