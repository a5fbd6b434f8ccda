"""Image folders (torchvision's ImageFolder layout), decoded once into a uint8 tensor and cached.

Layouts, under ``root``:

    train/<class>/*.jpg  test/<class>/...    trials split validation off train; test is held out
    train/<class>/...    val/<class>/...     (ImageNet) val is held out as the test split
    train/ val/ test/                        all three as given
    <class>/*.jpg                            one tree, split by test_fraction and val_fraction

Class names are the folder names (sorted, as ImageFolder does). Every image
is brought to one size: if they all share one it is kept, otherwise (or when
``size`` is given) the shorter side is resized to ``size`` and the centre
``size`` x ``size`` is cropped. ``channels: auto`` keeps grayscale sets as one
channel and converts anything else to RGB; 1 or 3 forces it (a grayscale set
for a model that needs three). A file that cannot be decoded is an error
naming it, or, with ``skip_bad_files: true``, a warning and a skip.

Decoding a folder is slow (CIFAR-10's 60,000 JPEGs take about a minute on 2
cores), so the decoded tensor is cached under ``$HPO_CACHE`` (default
``~/.cache/hpo``), keyed by the files' names, sizes and times and the options.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from data import register_dataset
from data.images import DataSource, LabelledImages
from hpo.errors import UserError

CHANNELS = ("auto", 1, 3)
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
MAX_DEFAULT_SIZE = 224  # used when images differ in size and no ``size`` is given
MAX_RESIDENT_BYTES = 8 * 2**30  # beyond this a decoded folder would not fit in memory comfortably


def cache_dir() -> Path:
    return Path(os.environ.get("HPO_CACHE") or Path.home() / ".cache" / "hpo")


def find_images(tree: Path, class_names: list[str] | None = None) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, label) pairs and class names of an ImageFolder tree (torchvision's discovery rules)."""
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(tree), allow_empty=True)
    except (FileNotFoundError, OSError) as err:
        raise UserError(f"{tree}: not an image folder ({err}); expected {tree}/<class>/<image files>") from None
    if class_names is not None and folder.classes != class_names:
        raise UserError(f"{tree}: classes {folder.classes} differ from the train folder's {class_names}")
    if not folder.samples:
        raise UserError(f"{tree}: no image files ({', '.join(e.lstrip('.') for e in _extensions())}) "
                        f"in its class folders")
    return folder.samples, folder.classes


def _extensions():
    from torchvision.datasets.folder import IMG_EXTENSIONS
    return IMG_EXTENSIONS


def _header(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except (UnidentifiedImageError, OSError, ValueError) as err:
        return err


def _decode(path: str, mode: str, size: int | None):
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            tensor = F.pil_to_tensor(image)
    except (OSError, ValueError) as err:
        return err
    if size is not None:
        tensor = F.center_crop(F.resize(tensor, size, antialias=True), [size, size])
    return tensor


def decode_folder(parts: dict[str, list[tuple[str, int]]], size: int | None, channels, skip_bad_files: bool,
                  workers: int = 8) -> tuple[dict[str, LabelledImages], int | None, int]:
    """Decode every part's files to uint8 tensors of one size; returns them, the size used and the channels."""
    files = [path for samples in parts.values() for path, _ in samples]
    with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
        headers = dict(zip(files, pool.map(_header, files)))
    bad = {path: h for path, h in headers.items() if isinstance(h, Exception)}
    for path, err in bad.items():
        if not skip_bad_files:
            raise UserError(f"{path}: not a readable image ({type(err).__name__}); remove it or set "
                            f"data.skip_bad_files: true")
        warnings.warn(f"skipping {path}: not a readable image", stacklevel=2)
    good = {path: h for path, h in headers.items() if path not in bad}
    if channels == "auto":
        channels = 1 if all(mode in GRAY_MODES for _, mode in good.values()) else 3
    sizes = {wh for wh, _ in good.values()}
    if size is None and len(sizes) > 1:
        size = min(MAX_DEFAULT_SIZE, int(statistics.median(min(wh) for wh, _ in good.values())))
        print(f"images differ in size; resizing to {size}x{size} (set data.size to choose)", file=sys.stderr)
    height, width = (size, size) if size else next(iter(sizes))[::-1]
    needed = len(good) * channels * height * width
    if needed > MAX_RESIDENT_BYTES:
        raise UserError(f"{len(good)} images of {channels}x{height}x{width} need {needed / 2**30:.1f} GiB in "
                        f"memory; set a smaller data.size (streaming from disk is not supported yet)")
    mode = "L" if channels == 1 else "RGB"
    decoded = {}
    with ThreadPoolExecutor(workers) as pool:
        for name, samples in parts.items():
            samples = [(p, label) for p, label in samples if p in good]
            tensors = list(pool.map(lambda s: _decode(s[0], mode, size), samples))
            for (path, _), tensor in zip(samples, tensors):
                if isinstance(tensor, Exception):
                    raise UserError(f"{path}: cannot be decoded ({type(tensor).__name__}); remove it or set "
                                    f"data.skip_bad_files: true")
            decoded[name] = LabelledImages(torch.stack(tensors).contiguous(),
                                           torch.tensor([label for _, label in samples], dtype=torch.long))
    return decoded, size, channels


def load_folder(root: str | Path, size: int | None = None, channels="auto", skip_bad_files: bool = False,
                cache: bool = True, class_names: list[str] | None = None) -> DataSource:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"data.root: {root} is not a folder; point it at an image folder (see README, Data sets)")
    if channels not in CHANNELS:
        raise UserError(f"data.channels: must be auto, 1 or 3, got {channels!r}")
    split_dirs = {name: root / name for name in ("train", "val", "test") if (root / name).is_dir()}
    if "train" in split_dirs:
        train, classes = find_images(split_dirs["train"], class_names)
        parts = {"pool": train}
        held_out = [n for n in ("val", "test") if n in split_dirs]
        if held_out == ["val"]:  # ImageNet: its val is the held-out test set
            parts["test"] = find_images(split_dirs["val"], classes)[0]
        else:
            for name in held_out:
                parts[name] = find_images(split_dirs[name], classes)[0]
    else:
        pool, classes = find_images(root, class_names)
        parts = {"pool": pool}

    key = _cache_key(root, parts, size, channels, skip_bad_files)
    cached = cache_dir() / f"folder-{key}.pt"
    if cache and cached.is_file():
        stored = torch.load(cached, weights_only=True)
        decoded = {name: LabelledImages(*pair) for name, pair in stored["parts"].items()}
    else:
        print(f"decoding {sum(len(s) for s in parts.values())} images under {root} (cached afterwards)...",
              file=sys.stderr, flush=True)
        decoded, _, _ = decode_folder(parts, size, channels, skip_bad_files)
        if cache:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(".tmp")
            torch.save({"parts": {n: (p.images, p.labels) for n, p in decoded.items()}}, partial)
            partial.replace(cached)
    return DataSource(pool=decoded["pool"], class_names=tuple(classes), test=decoded.get("test"),
                      val=decoded.get("val"))


def _cache_key(root: Path, parts, size, channels, skip_bad_files) -> str:
    root = root.resolve()
    digest = hashlib.sha256(repr((str(root), size, channels, skip_bad_files)).encode())
    for name, samples in parts.items():
        for path, label in samples:
            stat = os.stat(path)
            relative = os.path.relpath(Path(path).resolve(), root)  # the same files however root was spelled
            digest.update(f"{name}\0{relative}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


@register_dataset("folder")
def folder(root: str, size: int | None = None, channels: str | int = "auto", skip_bad_files: bool = False,
           cache: bool = True) -> DataSource:
    """Any ImageFolder tree (see the module docstring)."""
    return load_folder(root, size, channels, skip_bad_files, cache)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@register_dataset("imagenet")
def imagenet(root: str, size: int = 224, skip_bad_files: bool = False, cache: bool = True) -> DataSource:
    """torchvision's ImageNet layout (train/<wnid>/, val/<wnid>/): the folder loader with ImageNet's
    presets (224 pixels, RGB, ImageNet mean and std); val is the held-out test split."""
    source = load_folder(root, size, 3, skip_bad_files, cache)
    return DataSource(source.pool, source.class_names, test=source.test, val=source.val,
                      mean=IMAGENET_MEAN, std=IMAGENET_STD)
