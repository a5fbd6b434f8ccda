"""CIFAR-10 and CIFAR-100 from a local folder: never a download unless ``download: true``.

``root`` may hold torchvision's format (``cifar-10-batches-py/`` or
``cifar-100-python/``, the pickled batches from the CIFAR site) or an
ImageFolder tree of images (``train/<class>/``, ``test/<class>/``, as in
shared/datasets/cifar10-jpg.tar.gz). The batches are read by a restricted
unpickler: a crafted file runs no code, it is refused in one line.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from hpo.data import register_dataset
from hpo.data.errors import DataError
from hpo.data.folder import load_folder
from hpo.data.images import DataSource, LabelledImages
from hpo.core.lazy import lazy

torch = lazy("torch")

# The usual published per-channel statistics of the training images.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


# torchvision's python format: the folder, the training batches, the test batch, the meta file and its keys.
LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta",
                "label_names", "labels"),
    "cifar100": ("cifar-100-python", ["train"], "test", "meta", "fine_label_names", "fine_labels"),
}
# What a CIFAR batch is made of: dicts, lists, strings, numbers and NumPy arrays. Nothing else is rebuilt.
ALLOWED_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                   ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
                   ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}


class _BatchUnpickler(pickle.Unpickler):
    """pickle, restricted to what a CIFAR batch holds: a crafted file runs no code, it is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which no CIFAR batch holds")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as file:
            batch = _BatchUnpickler(file, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise DataError(f"{path} is not a CIFAR batch: {str(err).splitlines()[0] if str(err) else 'unreadable'}",
                        "data.root") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} is not a CIFAR batch: it holds a {type(batch).__name__}, not a mapping", "data.root")
    return batch


def _part(folder: Path, files: list[str], label_key: str) -> LabelledImages:
    import numpy as np

    data, labels = [], []
    for name in files:
        batch = _read_batch(folder / name)
        if not isinstance(batch.get("data"), np.ndarray) or not isinstance(batch.get(label_key), list):
            raise DataError(f"{folder / name} is not a CIFAR batch: no 'data' array and {label_key!r} list",
                            "data.root")
        data.append(batch["data"])
        labels += batch[label_key]
    images = np.concatenate(data)
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or len(images) != len(labels):
        raise DataError(f"{folder}: the batches hold {images.dtype} {images.shape} for {len(labels)} labels, not "
                        f"uint8 rows of 3x32x32 pixels, one per label", "data.root")
    return LabelledImages(torch.from_numpy(images.reshape(-1, 3, 32, 32).copy()),
                          torch.tensor(labels, dtype=torch.long))


def _download(name: str, root: Path) -> None:
    """torchvision's download of the CIFAR site's archive, checked against its published MD5."""
    import torchvision.datasets as tvd

    reader = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    reader(str(root), train=True, download=True)


def load_cifar(name: str, root: str, download: bool) -> DataSource:
    root_path = Path(root).expanduser()
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    if (root_path / "train").is_dir() and not download:
        source = load_folder(root_path)
        return DataSource(source.pool, source.class_names, test=source.test, val=source.val, mean=mean, std=std)
    folder_name, train_files, test_file, meta_file, names_key, label_key = LAYOUT[name]
    if download:
        _download(name, root_path)
    folder = root_path / folder_name
    missing = [f for f in (*train_files, test_file, meta_file) if not (folder / f).is_file()]
    if missing:
        raise DataError(f"no {name} under {root_path}: expected {folder}/ (torchvision's format, missing "
                        f"{', '.join(missing)}) or {root_path}/train/<class>/ image folders; set data.download: "
                        f"true only where there is a network", "data.root")
    class_names = _read_batch(folder / meta_file).get(names_key)
    if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names):
        raise DataError(f"{folder / meta_file}: no list of class names under {names_key!r}", "data.root")
    train, test = _part(folder, train_files, label_key), _part(folder, [test_file], label_key)
    return DataSource(train, tuple(class_names), test=test, mean=mean, std=std)


@register_dataset("cifar10")
def cifar10(root: str, download: bool = False) -> DataSource:
    return load_cifar("cifar10", root, download)


@register_dataset("cifar100")
def cifar100(root: str, download: bool = False) -> DataSource:
    return load_cifar("cifar100", root, download)
