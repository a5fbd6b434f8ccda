"""torchvision's classification data sets by name, from files already under ``root``:
``data: {name: torchvision/FashionMNIST, root: /data}``. ``download: false`` is the default (true fetches
through torchvision where there is a network).

The train and test parts come from the class's own ``train=True/False`` or ``split="train"/"test"``; the
other ``data:`` fields are the class's keyword arguments (``split: balanced`` for EMNIST). Images become
uint8 tensors like every other source (grey ones keep one channel); a set whose images differ in size is
refused (the ``folder`` data set resizes).
"""

from __future__ import annotations

import inspect
from typing import Any

from hpo.data.errors import DataError
from hpo.data.images import DataSource, labelled_from

PREFIX = "torchvision/"
# The classification sets with a train and a test part, in files of one image size.
RESERVED = ("train", "split", "transform", "target_transform")  # EMNIST's split names its variant
NAMES = ("MNIST", "FashionMNIST", "KMNIST", "QMNIST", "EMNIST", "USPS", "SVHN", "STL10", "CIFAR10", "CIFAR100")


def check(name: str, args: dict[str, Any]) -> None:
    if name not in NAMES:
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


def load(name: str, root: str, download: bool = False, **args: Any) -> DataSource:
    import torchvision

    check(name, {"root": root, "download": download, **args})
    cls = getattr(torchvision.datasets, name)
    takes = inspect.signature(cls).parameters
    unknown = sorted(set(args) - set(takes))
    if unknown:
        raise DataError(f"{PREFIX}{name} takes no {unknown[0]!r}; it takes "
                        f"{', '.join(p for p in takes if p not in ('root', 'download', 'transform', 'target_transform', 'train', 'split'))}",
                        f"data.{unknown[0]}")
    parts = {}
    by_train = "train" in takes or name == "EMNIST"  # EMNIST takes train= through **kwargs
    try:
        for part in ("train", "test"):
            chosen = {"train": part == "train"} if by_train else {"split": part}
            parts[part] = cls(root=root, download=download, **chosen, **args)
        train, test = (labelled_from(_pairs(parts[p]), f"{PREFIX}{name} {p}") for p in ("train", "test"))
    except (RuntimeError, TypeError, ValueError, OSError) as err:  # "Dataset not found. ...", a bad argument
        raise DataError(f"{PREFIX}{name}: {' '.join(str(err).split())[:300]} (looked in {root})",
                        "data.root") from None
    classes = getattr(parts["train"], "classes", None)
    count = int(max(train.labels.max(), test.labels.max())) + 1
    names = tuple(str(c) for c in classes) if classes and len(classes) >= count else tuple(map(str, range(count)))
    return DataSource(train, names, test=test)


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
