"""Using a final checkpoint: score it on its test split, or classify image files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hpo.data.errors import DataError
from hpo.data.splits import load_splits
from hpo.core.errors import UserError
from hpo.train.checkpoint import model_from_checkpoint
from hpo.train.trainer import Evaluation, Setup, evaluate, predict

MAX_PIXELS = 50_000_000  # 7,000 x 7,000, 150 MB decoded in RGB; a 20,000 x 20,000 PNG would take 1.2 GB


def _setup(checkpoint: dict, device: torch.device) -> Setup:
    """The checkpoint's normalisation on ``device``: what scoring and predicting with it are given."""
    prep = checkpoint["preprocessing"]
    return Setup(device, tuple(prep["mean"]), tuple(prep["std"]))


def evaluate_checkpoint(checkpoint: dict, device: torch.device, data_root: str | None = None) -> Evaluation:
    """Accuracy on the test split of the data set it was trained on (rebuilt from its data fields);
    ``data_root`` points at the data where it lies on this machine."""
    from hpo.data import DATASETS, TORCHVISION

    data = checkpoint["data"]
    if ":" in data["name"] and not data["name"].startswith(TORCHVISION):  # never imported from a checkpoint
        raise UserError(f"the checkpoint's data set {data['name']!r} is code of the user's, and hpo never imports "
                        f"code a checkpoint names; test it in Python: hpo.load(CHECKPOINT).model on your data")
    takes_root = data["name"].startswith(TORCHVISION) or "root" in DATASETS.arguments(data["name"])
    if data_root and not takes_root:
        raise UserError(f"--data-root: the checkpoint's data set {data['name']!r} reads no files (it takes no "
                        f"root); leave --data-root out")
    args = {**data["args"], **({"root": data_root} if data_root else {})}
    try:
        splits = load_splits(data["name"], args, data["val_fraction"], data["test_fraction"], data["split_seed"],
                             data.get("normalize", "auto"))
    except DataError as err:
        if data_root or "root" not in args:
            raise
        raise UserError(f"{err.message}; the checkpoint was trained on {args['root']}: where the data lies "
                        f"elsewhere on this machine, pass --data-root DIR") from None
    return evaluate(model_from_checkpoint(checkpoint), splits.test, _setup(checkpoint, device))


@dataclass(frozen=True)
class Prediction:
    file: str
    label: str
    probability: float


def read_image(path: str | Path, channels: int, image_size) -> torch.Tensor:
    """An image file as uint8 (C, H, W) with the checkpoint's channels and size."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such image file")
    return decode_image_file(path.read_bytes(), channels, image_size, str(path))


def decode_image_file(contents: bytes, channels: int, image_size, name: str = "image") -> torch.Tensor:
    """The bytes of an image file (JPEG, PNG, WebP or GIF) as uint8 (C, H, W) with the checkpoint's channels
    and size; ``name`` says which image in the error. ``hpo predict`` and the registered model both read
    images here, so both see the same pixels."""
    import io

    from PIL import Image, UnidentifiedImageError
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2 import functional as F

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the header only: the size is judged below
    try:  # an image too large to decode is refused before a byte of it is decoded
        with Image.open(io.BytesIO(contents)) as header:
            width, height = header.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise UserError(f"{name}: cannot be read as an image (JPEG, PNG, WebP or GIF)") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if width * height > MAX_PIXELS:
        raise UserError(f"{name}: {width}x{height} pixels is more than the {MAX_PIXELS:,} an image may have here; "
                        f"resize it first")
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    try:  # bytearray: torch.frombuffer warns about a read-only buffer
        image = decode_image(torch.frombuffer(bytearray(contents), dtype=torch.uint8), mode=mode)
    except (RuntimeError, ValueError):
        raise UserError(f"{name}: cannot be read as an image (JPEG, PNG, WebP or GIF)") from None
    if tuple(image.shape[1:]) != tuple(image_size):  # as data/folder.py: shorter side, then the centre
        image = F.center_crop(F.resize(image, min(image_size), antialias=True), list(image_size))
    return image


def class_probabilities(model: torch.nn.Module, checkpoint: dict, images: torch.Tensor,
                        device: torch.device) -> torch.Tensor:
    """(N, classes) float32 probabilities on the CPU for uint8 images already at the checkpoint's size."""
    logits = predict(model, images, _setup(checkpoint, device))
    return logits.softmax(dim=1).cpu()


def predict_files(checkpoint: dict, files: list[str], device: torch.device) -> list[Prediction]:
    prep = checkpoint["preprocessing"]
    images = torch.stack([read_image(f, prep["channels"], prep["image_size"]) for f in files])
    probabilities = class_probabilities(model_from_checkpoint(checkpoint), checkpoint, images, device)
    best = probabilities.argmax(dim=1)
    names = checkpoint["class_names"]
    return [Prediction(str(f), names[i], probabilities[n, i].item()) for n, (f, i) in enumerate(zip(files, best.tolist()))]
