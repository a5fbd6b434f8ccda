"""Batch transforms on image tensors: normalisation and per-image colour jitter.

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

import torch

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
