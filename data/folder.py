"""Image folders (torchvision's ImageFolder layout): decoded once into a uint8 tensor and cached, or streamed.

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

A folder whose decoded images would exceed ``MAX_RESIDENT_BYTES`` (or any
folder with ``stream: true``) is not decoded up front: it streams from disk
through DataLoader workers (``data/streaming.py``; ``workers``, ``decode``),
and only the list of its readable files is cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.data import register_dataset
from hpo.data.decoding import decode_file, read_header
from hpo.data.errors import DataError
from hpo.data.images import DataSource, LabelledImages
from hpo.core.lazy import lazy

torch = lazy("torch")

if TYPE_CHECKING:
    from hpo.data.streaming import ImageFiles

CHANNELS = ("auto", 1, 3)
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
MAX_DEFAULT_SIZE = 224  # used when images differ in size and no ``size`` is given
MAX_RESIDENT_BYTES = 8 * 2**30  # beyond this a decoded folder would not fit in memory comfortably
STREAM = ("auto", True, False)  # auto: stream from disk when the decoded images exceed MAX_RESIDENT_BYTES
DECODERS = ("auto", "workers", "device")  # where a streamed file is decoded (data/streaming.py)


def check_options(size: int | None = None, channels="auto", stream="auto", workers="auto", decode: str = "auto",
                  **others) -> None:
    """A DataError naming the field for an option value the folder loaders do not take. The study
    validator calls it when the file is read (``hpo check``), ``load_folder`` before it opens anything;
    ``others`` (root, skip_bad_files, cache) take any value of their type."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise DataError(f"must be a whole number of pixels >= 1, or null to keep the images' own size, "
                        f"got {size!r}", "data.size")
    if not _one_of(channels, CHANNELS):
        raise DataError(f"must be {_spelled(CHANNELS)}, got {channels!r}", "data.channels")
    if not _one_of(stream, STREAM):
        raise DataError(f"must be {_spelled(STREAM)}, got {stream!r}", "data.stream")
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise DataError(f"must be auto or a whole number >= 0 (DataLoader workers), got {workers!r}", "data.workers")
    if not _one_of(decode, DECODERS):
        raise DataError(f"must be one of {', '.join(DECODERS)}, got {decode!r}", "data.decode")


def _one_of(value, allowed) -> bool:
    # By type as well as value: True == 1 in Python, but ``channels: true`` is no channel count.
    return any(type(value) is type(a) and value == a for a in allowed)


def _spelled(allowed) -> str:
    """``("auto", True, False)`` -> "auto, true or false", as the values are written in YAML."""
    words = [str(a).lower() if isinstance(a, bool) else str(a) for a in allowed]
    return f"{', '.join(words[:-1])} or {words[-1]}"


def cache_dir() -> Path:
    return Path(os.environ.get("HPO_CACHE") or Path.home() / ".cache" / "hpo")


def find_images(tree: Path, class_names: list[str] | None = None) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, label) pairs and class names of an ImageFolder tree (torchvision's discovery rules)."""
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(tree), allow_empty=True)
    except (FileNotFoundError, OSError) as err:
        raise DataError(f"{tree}: not an image folder ({err}); expected {tree}/<class>/<image files>") from None
    if class_names is not None and folder.classes != class_names:
        raise DataError(f"{tree}: classes {folder.classes} differ from the train folder's {class_names}")
    if not folder.samples:
        raise DataError(f"{tree}: no image files ({', '.join(e.lstrip('.') for e in _extensions())}) "
                        f"in its class folders")
    return folder.samples, folder.classes


def _extensions():
    from torchvision.datasets.folder import IMG_EXTENSIONS
    return IMG_EXTENSIONS


def scan_folder(parts: dict[str, list[tuple[str, int]]], size: int | None, channels,
                skip_bad_files: bool, workers: int = 8):
    """Read every file's header: the readable files of each part, the size to bring them to (None when
    they share one), the channels and the (height, width) they will have."""
    files = [path for samples in parts.values() for path, _ in samples]
    with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while reading
        headers = dict(zip(files, pool.map(read_header, files)))
    bad = {path: h for path, h in headers.items() if isinstance(h, Exception)}
    for path, err in bad.items():
        if not skip_bad_files:
            raise DataError(f"{path}: not a readable image ({type(err).__name__}); remove it or set "
                            f"data.skip_bad_files: true")
        warnings.warn(f"skipping {path}: not a readable image", stacklevel=2)
    good = {path: h for path, h in headers.items() if path not in bad}
    if channels == "auto":
        channels = 1 if all(mode in GRAY_MODES for _, mode in good.values()) else 3
    sizes = {wh for wh, _ in good.values()}
    if size is None and len(sizes) > 1:
        size = min(MAX_DEFAULT_SIZE, int(statistics.median(min(wh) for wh, _ in good.values())))
        print(f"images differ in size; resizing to {size}x{size} (set data.size to choose)", file=sys.stderr)
    readable = {name: [(p, label) for p, label in samples if p in good] for name, samples in parts.items()}
    image_size = (size, size) if size else next(iter(sizes))[::-1]
    return readable, size, channels, image_size


def decode_parts(parts: dict[str, list[tuple[str, int]]], mode: str, size: int | None,
                 workers: int = 8) -> dict[str, LabelledImages]:
    """Every part's files decoded to one uint8 tensor each."""
    decoded = {}
    with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
        for name, samples in parts.items():
            tensors = list(pool.map(lambda s: decode_file(s[0], mode, size), samples))
            decoded[name] = LabelledImages(torch.stack(tensors).contiguous(),
                                           torch.tensor([label for _, label in samples], dtype=torch.long))
    return decoded


def file_parts(parts: dict[str, list[tuple[str, int]]], mode: str, size: int | None,
               image_size: tuple[int, int], workers: int, decode: str) -> dict[str, ImageFiles]:
    """Every part as rows of one FileTable, streamed from disk (data/streaming.py)."""
    from hpo.data.streaming import FileTable, ImageFiles

    samples = [sample for part in parts.values() for sample in part]
    table = FileTable(tuple(p for p, _ in samples), torch.tensor([label for _, label in samples], dtype=torch.long),
                      mode, size, image_size, workers, decode)
    rows = torch.arange(len(samples)).split([len(part) for part in parts.values()])
    return {name: ImageFiles(table, index) for name, index in zip(parts, rows)}


def load_folder(root: str | Path, size: int | None = None, channels="auto", skip_bad_files: bool = False,
                cache: bool = True, class_names: list[str] | None = None, stream="auto", workers="auto",
                decode: str = "auto") -> DataSource:
    root = Path(root).expanduser()
    check_options(size=size, channels=channels, stream=stream, workers=workers, decode=decode)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; point it at an image folder (see docs/models-and-data.md)", "data.root")
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
    decoded_cache, scan_cache = cache_dir() / f"folder-{key}.pt", cache_dir() / f"folder-{key}-files.json"
    if cache and stream is not True and decoded_cache.is_file():
        stored = torch.load(decoded_cache, weights_only=True)
        loaded = {name: LabelledImages(*pair) for name, pair in stored["parts"].items()}
    else:
        scanned_before = cache and scan_cache.is_file()
        if scanned_before:
            scan = json.loads(scan_cache.read_text())
            readable = {name: [tuple(sample) for sample in samples] for name, samples in scan["parts"].items()}
            size, channels, image_size = scan["size"], scan["channels"], tuple(scan["image_size"])
        else:
            print(f"reading the headers of {sum(len(s) for s in parts.values())} images under {root}...",
                  file=sys.stderr, flush=True)
            readable, size, channels, image_size = scan_folder(parts, size, channels, skip_bad_files)
        mode = "L" if channels == 1 else "RGB"
        count = sum(len(samples) for samples in readable.values())
        needed = count * channels * image_size[0] * image_size[1]
        if stream is True or (stream == "auto" and needed > MAX_RESIDENT_BYTES):
            from hpo.data.streaming import default_workers

            workers = default_workers() if workers == "auto" else workers
            print(f"streaming {count} images from disk through {workers} DataLoader workers "
                  f"({needed / 2**30:.1f} GiB decoded)", file=sys.stderr, flush=True)
            loaded = file_parts(readable, mode, size, image_size, workers, decode)
            if cache and not scanned_before:
                _write_atomically(scan_cache, lambda path: path.write_text(json.dumps(
                    {"parts": readable, "size": size, "channels": channels, "image_size": image_size})))
        else:
            if needed > MAX_RESIDENT_BYTES:
                raise DataError(f"is false, but {count} images of {channels}x{image_size[0]}x{image_size[1]} "
                                f"need {needed / 2**30:.1f} GiB in memory; set it to auto to stream them from "
                                f"disk, or set a smaller data.size", "data.stream")
            print(f"decoding {count} images under {root} (cached afterwards)...", file=sys.stderr, flush=True)
            loaded = decode_parts(readable, mode, size)
            if cache:
                _write_atomically(decoded_cache, lambda path: torch.save(
                    {"parts": {n: (p.images, p.labels) for n, p in loaded.items()}}, path))
    return DataSource(pool=loaded["pool"], class_names=tuple(classes), test=loaded.get("test"),
                      val=loaded.get("val"))


def _write_atomically(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    write(partial)
    partial.replace(path)


def _cache_key(root: Path, parts, size, channels, skip_bad_files) -> str:
    root = root.resolve()
    digest = hashlib.sha256(repr((str(root), size, channels, skip_bad_files)).encode())
    for name, samples in parts.items():
        for path, label in samples:
            stat = os.stat(path)
            relative = os.path.relpath(Path(path).resolve(), root)  # the same files however root was spelled
            digest.update(f"{name}\0{relative}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


@register_dataset("folder", check=check_options)
def folder(root: str, size: int | None = None, channels: str | int = "auto", skip_bad_files: bool = False,
           cache: bool = True, stream: str | bool = "auto", workers: str | int = "auto",
           decode: str = "auto") -> DataSource:
    """Any ImageFolder tree (see the module docstring)."""
    return load_folder(root, size, channels, skip_bad_files, cache, stream=stream, workers=workers, decode=decode)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@register_dataset("imagenet", check=check_options)
def imagenet(root: str, size: int = 224, skip_bad_files: bool = False, cache: bool = True,
             stream: str | bool = "auto", workers: str | int = "auto", decode: str = "auto") -> DataSource:
    """torchvision's ImageNet layout (train/<wnid>/, val/<wnid>/): the folder loader with ImageNet's
    presets (224 pixels, RGB, ImageNet mean and std); val is the held-out test split. At 224 pixels it
    is far too large to decode into memory, so it streams (data/streaming.py)."""
    source = load_folder(root, size, 3, skip_bad_files, cache, stream=stream, workers=workers, decode=decode)
    return DataSource(source.pool, source.class_names, test=source.test, val=source.val,
                      mean=IMAGENET_MEAN, std=IMAGENET_STD)
