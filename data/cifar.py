"""CIFAR-10 and CIFAR-100 from a local folder: never a download unless ``download: true``.

``root`` may hold torchvision's format (``cifar-10-batches-py/`` or
``cifar-100-python/``, the pickled batches from the CIFAR site) or an
ImageFolder tree of images (``train/<class>/``, ``test/<class>/``, as in
shared/datasets/cifar10-jpg.tar.gz).
"""

from __future__ import annotations

import pickle
from pathlib import Path

from data import register_dataset
from data.errors import DataError
from data.folder import load_folder
from data.images import DataSource, LabelledImages
from hpo.core.lazy import lazy

torch = lazy("torch")

# The usual published per-channel statistics of the training images.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def _torchvision_class(name: str):
    import torchvision.datasets as tvd

    base = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100

    class LocalCIFAR(base):
        """torchvision's reader, without its MD5 checks (they pin the files of the CIFAR site, which a
        local copy or a test's own small set need not match; download=True still checks them)."""

        def _check_integrity(self) -> bool:
            files = self.train_list + self.test_list
            return all((Path(self.root) / self.base_folder / name).is_file() for name, _ in files)

        def _load_meta(self) -> None:
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    return LocalCIFAR


def load_cifar(name: str, root: str, download: bool) -> DataSource:
    root_path = Path(root).expanduser()
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    if (root_path / "train").is_dir() and not download:
        source = load_folder(root_path)
        return DataSource(source.pool, source.class_names, test=source.test, val=source.val, mean=mean, std=std)
    reader = _torchvision_class(name)
    try:
        train = reader(str(root_path), train=True, download=download)
        test = reader(str(root_path), train=False, download=False)
    except RuntimeError:
        raise DataError(f"no {name} under {root_path}: expected {root_path}/{reader.base_folder}/ "
                        f"(torchvision's format) or {root_path}/train/<class>/ image folders; "
                        f"set data.download: true only where there is a network", "data.root") from None

    def tensors(part) -> LabelledImages:
        images = torch.from_numpy(part.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW, uint8
        return LabelledImages(images, torch.tensor(part.targets, dtype=torch.long))

    return DataSource(tensors(train), tuple(train.classes), test=tensors(test), mean=mean, std=std)


@register_dataset("cifar10")
def cifar10(root: str, download: bool = False) -> DataSource:
    return load_cifar("cifar10", root, download)


@register_dataset("cifar100")
def cifar100(root: str, download: bool = False) -> DataSource:
    return load_cifar("cifar100", root, download)
