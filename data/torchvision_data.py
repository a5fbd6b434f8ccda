"""torchvision's classification data sets by name, from files already under ``root``:
``data: {name: torchvision/FashionMNIST, root: /data}``. ``download: false`` is the default (true fetches
through torchvision where there is a network).

The train and test parts come from the class's own ``train=True/False`` or ``split="train"/"test"``; the
other ``data:`` fields are the class's keyword arguments (``split: balanced`` for EMNIST). Images become
uint8 tensors like every other source (grey ones keep one channel).

The sets whose images differ in size (``SIZED``: Flowers102, Food101, DTD, ...) take ``size``: each image is
made RGB, its shorter side resized to ``size`` and the centre ``size`` x ``size`` cropped, as the ``folder``
data set does. A set with no test part of its own (EuroSAT, Caltech101, ...) is one pool, and hpo carves its
test split from it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from hpo.data.errors import DataError
from hpo.data.images import DataSource, labelled_from

PREFIX = "torchvision/"
# The classification sets with a train and a test part, in files of one image size.
RESERVED = ("train", "split", "transform", "target_transform")  # EMNIST's split names its variant
FIXED = ("MNIST", "FashionMNIST", "KMNIST", "QMNIST", "EMNIST", "USPS", "SVHN", "STL10", "CIFAR10", "CIFAR100")
# Images of many sizes: name -> the split values of its train and test parts (None: one pool, no split).
SIZED = {"Flowers102": ("train", "test"), "Food101": ("train", "test"), "OxfordIIITPet": ("trainval", "test"),
         "DTD": ("train", "test"), "GTSRB": ("train", "test"), "FGVCAircraft": ("trainval", "test"),
         "StanfordCars": ("train", "test"), "Country211": ("train", "test"), "RenderedSST2": ("train", "test"),
         "CLEVRClassification": ("train", "val"),  # its test part has no labels
         "EuroSAT": None, "SUN397": None, "Caltech101": None, "Caltech256": None}
NAMES = FIXED + tuple(SIZED)
# The class arguments whose values torchvision checks only once it opens the files: judged when the study is read.
CHOICES = {("EMNIST", "split"): ("byclass", "bymerge", "balanced", "letters", "digits", "mnist"),
           ("DTD", "partition"): tuple(range(1, 11))}
REQUIRED = {"EMNIST": "split"}


def check(name: str, args: dict[str, Any]) -> None:
    if name not in NAMES:
        import difflib

        close = difflib.get_close_matches(name.lower(), [n.lower() for n in NAMES], n=1, cutoff=0.6)
        if close:
            raise DataError(f"{PREFIX}{name} is not one of the data sets hpo loads by name; did you mean "
                            f"{PREFIX}{NAMES[[n.lower() for n in NAMES].index(close[0])]}?", "data.name")
        raise DataError(f"{PREFIX}{name} is not one of the data sets hpo loads by name: "
                        f"{', '.join(PREFIX + n for n in NAMES)} (any other: data: {{name: folder, root: DIR}})",
                        "data.name")
    if not isinstance(args.get("root"), str) or not args["root"]:
        raise DataError(f"{PREFIX}{name} needs root: the folder that holds its files", "data.root")
    if not isinstance(args.get("download", False), bool):
        raise DataError(f"must be true or false, got {args['download']!r}", "data.download")
    for key in RESERVED:
        if key in args and not (key == "split" and name == "EMNIST"):
            raise DataError("is set by hpo (it loads the train and the test part itself); leave it out",
                            f"data.{key}")
    if name in REQUIRED and REQUIRED[name] not in args:
        allowed = CHOICES[name, REQUIRED[name]]
        raise DataError(f"{PREFIX}{name} needs {REQUIRED[name]}: one of {', '.join(map(str, allowed))}",
                        f"data.{REQUIRED[name]}")
    for (of, key), allowed in CHOICES.items():
        if of == name and key in args and not any(type(args[key]) is type(a) and args[key] == a for a in allowed):
            raise DataError(f"must be one of {', '.join(map(str, allowed))}, got {args[key]!r}", f"data.{key}")
    size = args.get("size")
    if name in SIZED:
        if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 1024:
            raise DataError(f"{PREFIX}{name}'s images differ in size: set size to the square side to resize them "
                            f"to, a whole number of pixels from 8 to 1024 (e.g. size: 64), got {size!r}", "data.size")
    elif "size" in args:
        raise DataError(f"{PREFIX}{name}'s images are all one size already; leave size out", "data.size")


def load(name: str, root: str, download: bool = False, size: int | None = None, **args: Any) -> DataSource:
    import torchvision

    check(name, {"root": root, "download": download, **args, **({"size": size} if size is not None else {})})
    cls = getattr(torchvision.datasets, name)
    takes = inspect.signature(cls).parameters
    unknown = sorted(set(args) - set(takes))
    if unknown:
        raise DataError(f"{PREFIX}{name} takes no {unknown[0]!r}; it takes "
                        f"{', '.join(p for p in takes if p not in ('root', 'download', 'transform', 'target_transform', 'train', 'split'))}",
                        f"data.{unknown[0]}")
    if name in SIZED:
        splits = SIZED[name] or (None,)
        chosen = [{"split": split} if split else {} for split in splits]
        args = {**args, "transform": functools.partial(_square_rgb, size=size)}
    elif "train" in takes or name == "EMNIST":  # EMNIST takes train= through **kwargs
        chosen = [{"train": True}, {"train": False}]
    else:
        chosen = [{"split": "train"}, {"split": "test"}]
    try:
        parts = [cls(root=root, download=download, **part, **args) for part in chosen]
        loaded = [labelled_from(_decoded(part) if name in SIZED else _pairs(part), f"{PREFIX}{name} {part_name}")
                  for part, part_name in zip(parts, ("train", "test"))]
    except (RuntimeError, TypeError, ValueError, OSError) as err:  # "Dataset not found. ...", a bad argument
        raise DataError(f"{PREFIX}{name}: {' '.join(str(err).split())[:300]} (looked in {root})",
                        "data.root") from None
    classes = getattr(parts[0], "classes", None) or getattr(parts[0], "categories", None)
    count = int(max(part.labels.max() for part in loaded)) + 1
    names = tuple(str(c) for c in classes) if classes and len(classes) >= count else tuple(map(str, range(count)))
    return DataSource(loaded[0], names, test=loaded[1] if len(loaded) > 1 else None)


def _square_rgb(image, size: int):
    """A PIL image as uint8 RGB (3, size, size): shorter side to ``size``, the centre cropped."""
    from torchvision.transforms.v2 import functional as F

    image = F.resize(image.convert("RGB"), size)
    return F.pil_to_tensor(F.center_crop(image, [size, size]))


def _decoded(dataset):
    """A set of image files (each item decoded and resized by its transform) as (images, labels) tensors,
    decoded by worker processes where there are many; a worker that fails is retried in this process, so the
    error is the image's own."""
    from hpo.data.streaming import default_workers

    count = len(dataset)
    if count == 0:
        return dataset  # labelled_from says it holds no images
    workers = default_workers() if count > 2000 else 0
    try:
        return _filled(dataset, count, workers)
    except Exception:  # noqa: BLE001 - a worker's error arrives wrapped in DataLoader's text, or as its death
        if workers == 0:
            raise
        return _filled(dataset, count, 0)  # once more here: a corrupt image's own error, or none (/dev/shm)


def _filled(dataset, count: int, workers: int):
    import torch

    loader = torch.utils.data.DataLoader(dataset, batch_size=256, num_workers=workers)
    images, labels, at = None, torch.empty(count, dtype=torch.long), 0
    for batch, targets in loader:
        if images is None:  # one tensor of the set's size, filled in place: no second copy at the end
            images = torch.empty((count, *batch.shape[1:]), dtype=batch.dtype)
        images[at:at + len(batch)], labels[at:at + len(batch)] = batch, torch.as_tensor(targets)
        at += len(batch)
    return images, labels


def _pairs(dataset):
    """The (images, labels) tensors a set holds in memory (.data and .targets or .labels), else the set."""
    import numpy as np
    import torch

    data, labels = getattr(dataset, "data", None), getattr(dataset, "targets", getattr(dataset, "labels", None))
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(labels, (list, np.ndarray)):
        labels = torch.as_tensor(np.asarray(labels))
    if isinstance(labels, torch.Tensor) and labels.ndim == 2:  # QMNIST keeps 8 columns; the first is the class
        labels = labels[:, 0]
    if isinstance(data, torch.Tensor) and isinstance(labels, torch.Tensor) and data.dtype == torch.uint8:
        if data.ndim == 4 and data.shape[-1] in (1, 3) and data.shape[1] not in (1, 3):
            data = data.permute(0, 3, 1, 2)  # CIFAR keeps (N, H, W, C)
        return data, labels
    return dataset
