"""Augmentation policies: TrivialAugmentWide and RandAugment, with a draw per image, on device batches.

torchvision's ``transforms.v2.TrivialAugmentWide`` and ``RandAugment`` give one image one operation at a time;
on a batch they would give every image the same one. Here each image draws its own operation (uniform over
the 14 below), magnitude bin (TrivialAugment: uniform over 31; RandAugment: the study's magnitude) and sign
(half the time, for the signed ones), as torchvision draws them, and the batch is transformed at once: the
geometric operations as one nearest-neighbour warp per image built as torchvision's ``affine``/``rotate``
build theirs (shears about the top-left corner, rotation about the centre, whole-pixel translations, 0
outside), the colour operations computed for the whole batch and kept where an image drew them, so nothing
waits for the host. RandAugment applies ``ops`` of them one after the other. Images are floats in 0..1;
the formulas are torchvision's for float images (Equalize is torchvision's own kernel, through uint8).
tests/test_transforms.py compares the distribution with torchvision's transforms.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from hpo.core.lazy import lazy
from hpo.data.pixels import constant, gray

torch = lazy("torch")
F = lazy("torch.nn.functional")

POLICIES = ("none", "trivialaugment", "randaugment")
OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
       "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
BINS = 31  # torchvision's num_magnitude_bins


def magnitude_table(policy: str, height: int, width: int) -> dict[str, list[float]]:
    """Each operation's 31 magnitudes (torchvision's _AUGMENTATION_SPACE; Identity, AutoContrast and Equalize
    take none)."""
    wide = policy == "trivialaugment"

    def linspace(low, high):
        return [low + (high - low) * i / (BINS - 1) for i in range(BINS)]

    posterize_span = 6 if wide else 4
    return {
        "ShearX": linspace(0.0, 0.99 if wide else 0.3), "ShearY": linspace(0.0, 0.99 if wide else 0.3),
        "TranslateX": linspace(0.0, 32.0 if wide else 150.0 / 331.0 * width),
        "TranslateY": linspace(0.0, 32.0 if wide else 150.0 / 331.0 * height),
        "Rotate": linspace(0.0, 135.0 if wide else 30.0),
        **{op: linspace(0.0, 0.99 if wide else 0.9) for op in ("Brightness", "Color", "Contrast", "Sharpness")},
        "Posterize": [float(round(8 - i / ((BINS - 1) / posterize_span))) for i in range(BINS)],
        "Solarize": linspace(1.0, 0.0),
    }


@dataclass(frozen=True)
class Policy:
    name: str = "none"  # one of POLICIES
    ops: int = 2  # RandAugment: operations per image
    magnitude: int = 9  # RandAugment: the magnitude bin, 0..30

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.name == "none":
            return x
        n, device = x.shape[0], x.device
        values = _magnitudes(self.name, *x.shape[-2:], device, x.dtype)
        for _ in range(1 if self.name == "trivialaugment" else self.ops):
            op = torch.randint(len(OPS), (n,), device=device, generator=generator)
            if self.name == "trivialaugment":
                level = torch.randint(BINS, (n,), device=device, generator=generator)
            else:
                level = torch.full((n,), self.magnitude, device=device)
            flip = torch.rand(n, device=device, generator=generator) <= 0.5
            signed = constant(tuple(float(o in SIGNED) for o in OPS), device, x.dtype)[op] > 0
            magnitude = values[op, level] * torch.where(signed & flip, -1.0, 1.0).to(x.dtype)
            x = apply(x, op, magnitude)
        return x


@functools.lru_cache(maxsize=16)
def _magnitudes(policy: str, height: int, width: int, device, dtype) -> torch.Tensor:
    table = magnitude_table(policy, height, width)
    return torch.tensor([table.get(op, [0.0] * BINS) for op in OPS], device=device, dtype=dtype)


def apply(x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Image i transformed by operation ``OPS[op[i]]`` at ``magnitude[i]``."""
    x = _warp(x, op, magnitude)
    m = magnitude.view(-1, 1, 1, 1)
    colour = {
        "Brightness": lambda: _blend(x, torch.zeros_like(x), 1.0 + m),
        "Color": lambda: x if x.shape[1] == 1 else _blend(x, gray(x), 1.0 + m),
        "Contrast": lambda: _blend(x, gray(x).mean(dim=(1, 2, 3), keepdim=True), 1.0 + m),
        "Sharpness": lambda: _sharpen(x, 1.0 + m),
        "Posterize": lambda: _posterize(x, m),
        "Solarize": lambda: torch.where(x >= m, 1.0 - x, x),
        "AutoContrast": lambda: _autocontrast(x),
        "Equalize": lambda: _equalize(x),
    }
    out = x
    for name, transform in colour.items():
        out = torch.where((op == OPS.index(name)).view(-1, 1, 1, 1), transform(), out)
    return out


def _blend(image: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    return (ratio * image + (1.0 - ratio) * other).clamp(0, 1)


def _sharpen(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_sharpness: the inner pixels blended with a 3x3 smoothing (1s, 5 in the middle)."""
    if x.shape[-1] <= 2 or x.shape[-2] <= 2:
        return x
    channels = x.shape[1]
    kernel = constant((1 / 13, 1 / 13, 1 / 13, 1 / 13, 5 / 13, 1 / 13, 1 / 13, 1 / 13, 1 / 13), x.device,
                      x.dtype).view(3, 3)
    blurred = F.conv2d(x, kernel.expand(channels, 1, 3, 3), groups=channels)
    out = x.clone()
    inner = out[..., 1:-1, 1:-1]
    out[..., 1:-1, 1:-1] = inner + (1.0 - factor) * (blurred - inner)
    return out.clamp(0, 1)


def _posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    levels = torch.pow(2.0, bits.round())
    return (x * levels).floor().clamp(min=torch.zeros_like(levels), max=levels - 1) / levels


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    low, high = x.amin(dim=(-2, -1), keepdim=True), x.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    scale = torch.where(flat, torch.ones_like(high), high - low)
    return ((x - torch.where(flat, torch.zeros_like(low), low)) / scale).clamp(0, 1)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.v2.functional import equalize  # per image already; floats go through uint8

    return equalize(x)


def _warp(x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """The geometric operations, one nearest-neighbour warp per image (identity for the others), built as
    torchvision's _get_inverse_affine_matrix and _affine_grid build theirs."""
    n, _, height, width = x.shape
    zero, one = torch.zeros_like(magnitude), torch.ones_like(magnitude)

    def pick(name):
        return op == OPS.index(name)

    shear_x = torch.where(pick("ShearX"), torch.atan(magnitude), zero)  # radians, as degrees(atan(m)) is
    shear_y = torch.where(pick("ShearY"), torch.atan(magnitude), zero)
    tx = torch.where(pick("TranslateX"), magnitude.trunc(), zero)  # int(magnitude)
    ty = torch.where(pick("TranslateY"), magnitude.trunc(), zero)
    rotation = torch.where(pick("Rotate"), -magnitude * math.pi / 180, zero)  # rotate() passes -angle
    sheared = pick("ShearX") | pick("ShearY")  # about the corner (center=[0, 0]); the others about the middle
    cx, cy = torch.where(sheared, -0.5 * width * one, zero), torch.where(sheared, -0.5 * height * one, zero)
    a = torch.cos(rotation - shear_y) / torch.cos(shear_y)
    b = -(a * torch.tan(shear_x) + torch.sin(rotation))
    c = torch.sin(rotation - shear_y) / torch.cos(shear_y)
    d = torch.cos(rotation) - c * torch.tan(shear_x)
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = cx - m0 * (cx + tx) - m1 * (cy + ty)
    m5 = cy - m3 * (cx + tx) - m4 * (cy + ty)
    theta = torch.stack([torch.stack([m0, m1, m2], 1), torch.stack([m3, m4, m5], 1)], 1)  # (n, 2, 3)
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=x.device, dtype=x.dtype)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=x.device, dtype=x.dtype)
    base = torch.stack([xs.expand(height, width), ys.view(-1, 1).expand(height, width),
                        torch.ones(height, width, device=x.device, dtype=x.dtype)], dim=-1).view(1, -1, 3)
    scale = constant((0.5 * width, 0.5 * height), x.device, x.dtype)
    grid = base.expand(n, -1, -1).bmm(theta.transpose(1, 2) / scale).view(n, height, width, 2)
    warped = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    geometric = sum(pick(name) for name in GEOMETRIC).bool().view(-1, 1, 1, 1)
    return torch.where(geometric, warped, x)
