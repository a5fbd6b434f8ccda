"""Batch transforms on image tensors: normalisation, per-image geometry and colour jitter.

They run on whole batches on whichever device holds the data (the GPU when
there is one), each image drawing its own random factors, so no DataLoader or
per-image Python loop sits in the training step.

Colour-jitter strength ``s`` (the study's ``jitter``) scales the four
torchvision ColorJitter ranges together:

    brightness = contrast = saturation = 0.4 * s     hue = 0.1 * s

so ``s = 0.5`` is write-up 003's ColorJitter(0.2, 0.2, 0.2, 0.05) and
``s = 0`` is off. Each factor is drawn uniformly from [1 - r, 1 + r] (hue
from [-h, h] of a full turn, shifted in HSV), as torchvision does; the four
are applied in a fixed order where torchvision shuffles it. Saturation and
hue only apply to RGB; a grayscale image gets brightness and contrast.

Every augmentation here draws from the same distribution as its torchvision
transform applied image by image on the CPU: tests/test_transforms.py
compares the per-pixel means and deviations of 8,000 draws each way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hpo.core.lazy import lazy
from hpo.data.pixels import constant, gray
from hpo.data.policies import Policy

torch = lazy("torch")
F = lazy("torch.nn.functional")

RRC_TRIES = 10  # torchvision's RandomResizedCrop tries 10 (area, ratio) draws before its fallback
ERASING_SCALE_MIN, ERASING_RATIO = 0.02, (0.3, 3.3)  # torchvision's RandomErasing defaults
MAX_JITTER = 2.5  # beyond this the brightness range 1 +- 0.4 s would include negative factors


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float 0..1."""
    return images.float().div_(255.0)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    mean = constant(tuple(mean), x.device, x.dtype).view(1, -1, 1, 1)  # made once per device, not per batch
    std = constant(tuple(std), x.device, x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def _factors(n: int, spread: float, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(n, 1, 1, 1, device=x.device, generator=generator, dtype=x.dtype)
    return 1.0 + (2.0 * u - 1.0) * spread


def _shift_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Shift hue by ``turns`` of the colour wheel per image, in HSV as torchvision's adjust_hue does
    (value and saturation kept; an earlier YIQ rotation drew a measurably different distribution)."""
    r, g, b = x.unbind(dim=1)
    value = x.amax(dim=1)
    chroma = value - x.amin(dim=1)
    safe = chroma.clamp_min(1e-12)
    hue = torch.where(value == r, ((g - b) / safe) % 6,
                      torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    hue = (hue + turns.view(-1, 1, 1)) % 1
    channels = []
    for n in (5, 3, 1):  # the closed form of HSV -> RGB
        k = (n + hue * 6) % 6
        channels.append(value - chroma * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(channels, dim=1)


def color_jitter(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image colour jitter of a float batch in 0..1 (see the module docstring for ``strength``)."""
    if strength <= 0:
        return x
    n, spread = x.shape[0], 0.4 * strength
    x = (x * _factors(n, spread, x, generator)).clamp_(0, 1)  # brightness
    mean = gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * _factors(n, spread, x, generator) + mean).clamp_(0, 1)  # contrast
    if x.shape[1] == 3:
        luma = gray(x)
        x = ((x - luma) * _factors(n, spread, x, generator) + luma).clamp_(0, 1)  # saturation
        turns = _factors(n, 0.1 * strength, x, generator) - 1.0
        x = _shift_hue(x, turns).clamp_(0, 1)
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
    policy: Policy = Policy()  # TrivialAugment or RandAugment, after the warp and before the jitter
    erasing: float = 0.0  # RandomErasing's probability, applied by ``erase`` after normalisation
    erasing_scale: float = 0.33  # its largest erased area, as a fraction of the image (the smallest is 0.02)

    @property
    def geometric(self) -> bool:
        return self.crop_padding > 0 or self.rrc_scale_min < 1 or self.hflip > 0 or self.rotation > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.geometric:
            x = self.warp(x, generator)
        return color_jitter(self.policy(x, generator), self.jitter, generator)

    def erase(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """torchvision's RandomErasing(p=erasing, scale=(0.02, erasing_scale), ratio=(0.3, 3.3), value=0) with a
        draw per image, on a normalised batch (0 is then the data's mean colour, as in torchvision's
        classification references, which erase after Normalize)."""
        if self.erasing <= 0:
            return x
        n, _, height, width = x.shape
        device, tries = x.device, RRC_TRIES  # RandomErasing also gives up after 10 draws that do not fit

        def uniform(*shape):
            return torch.rand(*shape, device=device, generator=generator)

        chosen = uniform(n) < self.erasing
        area = height * width * (ERASING_SCALE_MIN + (self.erasing_scale - ERASING_SCALE_MIN) * uniform(n, tries))
        low, high = math.log(ERASING_RATIO[0]), math.log(ERASING_RATIO[1])
        aspect = (low + (high - low) * uniform(n, tries)).exp()
        h, w = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()  # half to even, as Python's round
        fits = (h < height) & (w < width)
        first = fits.int().argmax(dim=1, keepdim=True)
        h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
        top = (uniform(n) * (height - h + 1)).floor()
        left = (uniform(n) * (width - w + 1)).floor()
        rows = torch.arange(height, device=device).view(1, -1, 1)
        cols = torch.arange(width, device=device).view(1, 1, -1)
        inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + h).view(-1, 1, 1))
                  & (cols >= left.view(-1, 1, 1)) & (cols < (left + w).view(-1, 1, 1)))
        erased = inside & (chosen & fits.any(dim=1)).view(-1, 1, 1)
        return x.masked_fill(erased.unsqueeze(1), 0.0)

    def crop_sizes(self, n: int, height: int, width: int, device, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """RandomResizedCrop's width and height as fractions of the image's, drawn as torchvision draws
        them: up to 10 tries of (area, log-ratio) per image, rounded to whole pixels, the first that
        fits; else its fallback. (Whole pixels matter: continuous sizes drew a measurably different
        distribution on 32-pixel images, tests/test_transforms.py.)"""
        tries = RRC_TRIES
        area = self.rrc_scale_min + (1 - self.rrc_scale_min) * torch.rand(n, tries, device=device, generator=generator)
        log_max = math.log(self.rrc_ratio_max)
        ratio = (log_max * (2 * torch.rand(n, tries, device=device, generator=generator) - 1)).exp()
        w = (area * ratio * height * width).sqrt().round()  # pixels
        h = (area / ratio * height * width).sqrt().round()
        fits = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
        first = fits.int().argmax(dim=1, keepdim=True)  # the first try that fits (0 when none does)
        w, h = w.gather(1, first).squeeze(1) / width, h.gather(1, first).squeeze(1) / height
        # No try fits: the whole image, cropped to the nearest allowed aspect ratio.
        in_ratio = width / height
        fallback_w = round(height * self.rrc_ratio_max) / width if in_ratio > self.rrc_ratio_max else 1.0
        fallback_h = round(width * self.rrc_ratio_max) / height if in_ratio < 1 / self.rrc_ratio_max else 1.0
        none_fits = ~fits.any(dim=1)
        w = torch.where(none_fits, torch.full_like(w, fallback_w), w)
        h = torch.where(none_fits, torch.full_like(h, fallback_h), h)
        return w, h

    def warp(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, _, height, width = x.shape

        def uniform(low, high):
            return low + (high - low) * torch.rand(n, device=x.device, generator=generator)

        matrix = torch.eye(3, device=x.device).repeat(n, 1, 1)  # output coords -> input coords, in [-1, 1]
        if self.rrc_scale_min < 1:  # a crop of area s and aspect r, resized back to the full size
            w, h = self.crop_sizes(n, height, width, x.device, generator)
            crop = torch.zeros_like(matrix)
            crop[:, 0, 0], crop[:, 1, 1], crop[:, 2, 2] = w, h, 1.0
            # A whole-pixel corner, uniform over the positions that fit (torchvision's randint).
            left = (uniform(0.0, 1.0) * ((1 - w) * width + 1)).floor().clamp(max=(1 - w) * width)
            top = (uniform(0.0, 1.0) * ((1 - h) * height + 1)).floor().clamp(max=(1 - h) * height)
            crop[:, 0, 2] = 2 * left / width + w - 1  # the crop's centre, in [-1, 1]
            crop[:, 1, 2] = 2 * top / height + h - 1
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
