"""Small data sets written in their real on-disk formats, for tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def write_cifar(root: Path, classes: int, per_class_train: int, per_class_test: int, seed: int = 0) -> Path:
    """torchvision's CIFAR format: cifar-10-batches-py/ (classes=10) or cifar-100-python/ (classes=100)."""
    rng = np.random.default_rng(seed)

    def batch(per_class):
        labels = np.repeat(np.arange(classes), per_class)
        rng.shuffle(labels)
        # class-dependent colour so a model can learn something
        data = rng.integers(0, 80, (len(labels), 3, 32, 32), dtype=np.uint8)
        for i, label in enumerate(labels):
            data[i, label % 3] += np.uint8(40 + (label * 7) % 120)
        return data.reshape(len(labels), 3072), labels.tolist()

    if classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        data, labels = batch(per_class_train)
        for i, chunk in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
            with open(folder / f"data_batch_{i}", "wb") as f:
                pickle.dump({"data": data[chunk], "labels": [labels[j] for j in chunk]}, f)
        data, labels = batch(per_class_test)
        with open(folder / "test_batch", "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for name, per_class in (("train", per_class_train), ("test", per_class_test)):
            data, labels = batch(per_class)
            with open(folder / name, "wb") as f:
                pickle.dump({"data": data, "fine_labels": labels, "coarse_labels": [0] * len(labels)}, f)
        with open(folder / "meta", "wb") as f:
            pickle.dump({"fine_label_names": [f"class{i:03d}" for i in range(100)]}, f)
    return root


def write_image_folder(root: Path, classes: list[str], per_class: int, sizes=((32, 32),), mode: str = "RGB",
                       suffix: str = ".png", seed: int = 0) -> Path:
    """root/<class>/<n><suffix>, images of the given sizes (cycled) with a class-dependent colour."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            width, height = sizes[n % len(sizes)]
            channels = 1 if mode == "L" else 3
            pixels = rng.integers(0, 60, (height, width, channels), dtype=np.uint8)
            pixels[..., c % channels] += np.uint8(60 + 50 * c % 190)
            image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
            image.save(root / name / f"{n:04d}{suffix}")
    return root
