"""Batch transforms on image tensors: normalisation, per-image geometry and colour jitter.

They run on whole batches on whichever device holds the data (the GPU when
there is one), each image drawing its own random factors, so no DataLoader or
per-image Python loop sits in the training step.

Colour-jitter strength ``s`` (the study's ``jitter``) scales the four
torchvision ColorJitter ranges together:

    brightness = contrast = saturation = 0.4 * s     hue = 0.1 * s

so ``s = 0.5`` is write-up 003's ColorJitter(0.2, 0.2, 0.2, 0.05) and
``s = 0`` is off. Each factor is drawn uniformly from [1 - r, 1 + r] (hue
from [-h, h] of a full turn), as torchvision does. Saturation and hue only
apply to RGB; a grayscale image gets brightness and contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAX_JITTER = 2.5  # beyond this the brightness range 1 +- 0.4 s would include negative factors
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float 0..1."""
    return images.float().div_(255.0)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def _factors(n: int, spread: float, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(n, 1, 1, 1, device=x.device, generator=generator, dtype=x.dtype)
    return 1.0 + (2.0 * u - 1.0) * spread


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``turns`` of a circle per image, in YIQ space (linear, so batched)."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          dtype=x.dtype, device=x.device)
    from_yiq = torch.linalg.inv(to_yiq)
    angle = turns.view(-1) * 2.0 * math.pi
    cos, sin = angle.cos(), angle.sin()
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack([torch.stack([one, zero, zero], -1),
                            torch.stack([zero, cos, -sin], -1),
                            torch.stack([zero, sin, cos], -1)], -2)  # (N, 3, 3)
    matrix = from_yiq @ rotation @ to_yiq
    return torch.einsum("nij,njhw->nihw", matrix, x)


def color_jitter(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image colour jitter of a float batch in 0..1 (see the module docstring for ``strength``)."""
    if strength <= 0:
        return x
    n, spread = x.shape[0], 0.4 * strength
    x = (x * _factors(n, spread, x, generator)).clamp_(0, 1)  # brightness
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * _factors(n, spread, x, generator) + mean).clamp_(0, 1)  # contrast
    if x.shape[1] == 3:
        gray = _gray(x)
        x = ((x - gray) * _factors(n, spread, x, generator) + gray).clamp_(0, 1)  # saturation
        turns = _factors(n, 0.1 * strength, x, generator) - 1.0
        x = _rotate_hue(x, turns).clamp_(0, 1)
    return x


@dataclass(frozen=True)
class Augmentation:
    """Training-batch augmentation, each image drawing its own parameters.

    The geometric parts (torchvision's RandomResizedCrop, RandomHorizontalFlip,
    RandomRotation and RandomCrop with padding) are composed into one affine
    map per image and applied with a single ``grid_sample``; a crop-with-padding
    shift is a whole number of pixels, so it copies pixels exactly as
    pad-then-crop does. Areas outside the image are filled with 0 (black).
    """

    crop_padding: int = 0  # pixels
    rrc_scale_min: float = 1.0  # area fraction; 1 = no RandomResizedCrop
    rrc_ratio_max: float = 4 / 3
    hflip: float = 0.0  # probability
    rotation: float = 0.0  # degrees
    jitter: float = 0.0  # colour-jitter strength (module docstring)

    @property
    def geometric(self) -> bool:
        return self.crop_padding > 0 or self.rrc_scale_min < 1 or self.hflip > 0 or self.rotation > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.geometric:
            x = self.warp(x, generator)
        return color_jitter(x, self.jitter, generator)

    def warp(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, _, height, width = x.shape

        def uniform(low, high):
            return low + (high - low) * torch.rand(n, device=x.device, generator=generator)

        matrix = torch.eye(3, device=x.device).repeat(n, 1, 1)  # output coords -> input coords, in [-1, 1]
        if self.rrc_scale_min < 1:  # a crop of area s and aspect r, resized back to the full size
            area = uniform(self.rrc_scale_min, 1.0)
            log_ratio = uniform(-math.log(self.rrc_ratio_max), math.log(self.rrc_ratio_max))
            ratio = log_ratio.exp()
            w = (area * ratio).sqrt().clamp(max=1.0)
            h = (area / ratio).sqrt().clamp(max=1.0)
            crop = torch.zeros_like(matrix)
            crop[:, 0, 0], crop[:, 1, 1], crop[:, 2, 2] = w, h, 1.0
            crop[:, 0, 2] = uniform(-1.0, 1.0) * (1 - w)
            crop[:, 1, 2] = uniform(-1.0, 1.0) * (1 - h)
            matrix = matrix @ crop
        if self.hflip > 0:
            flip = torch.eye(3, device=x.device).repeat(n, 1, 1)
            flip[:, 0, 0] = torch.where(uniform(0.0, 1.0) < self.hflip, -1.0, 1.0)
            matrix = matrix @ flip
        if self.rotation > 0:
            angle = uniform(-self.rotation, self.rotation) * math.pi / 180
            rotate = torch.eye(3, device=x.device).repeat(n, 1, 1)
            rotate[:, 0, 0], rotate[:, 0, 1] = angle.cos(), -angle.sin()
            rotate[:, 1, 0], rotate[:, 1, 1] = angle.sin(), angle.cos()
            matrix = matrix @ rotate
        if self.crop_padding > 0:
            p = self.crop_padding
            shift = torch.eye(3, device=x.device).repeat(n, 1, 1)
            shift[:, 0, 2] = torch.randint(-p, p + 1, (n,), device=x.device, generator=generator) * 2.0 / width
            shift[:, 1, 2] = torch.randint(-p, p + 1, (n,), device=x.device, generator=generator) * 2.0 / height
            matrix = matrix @ shift
        grid = F.affine_grid(matrix[:, :2, :].to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
