"""Decoding image files to uint8 tensors of one size: the one place both folder paths decode.

The resident path (``data/folder.py``) decodes a whole folder once; the
streaming path (``data/streaming.py``) decodes batch by batch. Both go through
these functions, so a file gives the same pixels either way: PIL decodes
(``decode_file``), or ``torchvision.io.decode_jpeg`` on the training device
(``decode_jpeg_batch``, nvJPEG on a GPU), and ``resize_and_crop`` brings the
image to the folder's size.
"""

from __future__ import annotations

from hpo.data.errors import DataError
from hpo.core.lazy import lazy

torch = lazy("torch")

JPEG_SUFFIXES = (".jpg", ".jpeg")


def read_header(path: str):
    """(width, height) and PIL mode of an image file, or the exception that reading its header raised."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except (UnidentifiedImageError, OSError, ValueError) as err:
        return err


def resize_and_crop(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """Shorter side to ``size``, then the centre ``size`` x ``size`` (torchvision's Resize + CenterCrop);
    ``None`` keeps the image as it is."""
    from torchvision.transforms.v2 import functional as F

    if size is None:
        return image
    return F.center_crop(F.resize(image, size, antialias=True), [size, size])


def decode_file(path: str, mode: str, size: int | None) -> torch.Tensor:
    """uint8 (C, H, W) of a file in PIL ``mode`` ("L" or "RGB"); an error naming the file if it cannot be."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    try:
        with Image.open(path) as image:
            tensor = F.pil_to_tensor(image.convert(mode))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot be decoded ({type(err).__name__}); remove it or set "
                        f"data.skip_bad_files: true") from None
    return resize_and_crop(tensor, size)


def decode_jpeg_batch(files: list[bytes], paths: list[str], mode: str, size: int | None,
                      device: torch.device) -> torch.Tensor:
    """uint8 (N, C, H, W) on ``device`` from the bytes of N JPEG files, decoded there (nvJPEG on CUDA)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in files]
    read_mode = ImageReadMode.GRAY if mode == "L" else ImageReadMode.RGB
    try:
        images = decode_jpeg(encoded, mode=read_mode, device=device)
    except RuntimeError:
        for data, path in zip(encoded, paths):  # find the file that broke the batch, to name it
            try:
                decode_jpeg(data, mode=read_mode, device=device)
            except RuntimeError as err:
                raise DataError(f"{path}: cannot be decoded as JPEG ({str(err).splitlines()[0]}); remove it "
                                f"or set data.decode: workers") from None
        raise
    return torch.stack([resize_and_crop(image, size) for image in images])
