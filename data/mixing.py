"""MixUp and CutMix: a training batch blended with itself shifted by one image, and the loss blended alike.

They follow torchvision's ``transforms.v2.MixUp`` and ``CutMix`` (the classification references' recipe): one
draw per batch of ``lam ~ Beta(alpha, alpha)``; image ``i`` is paired with image ``i - 1`` (the batch is
shuffled, so the pairs are random). MixUp blends the whole images, ``lam * x + (1 - lam) * x_rolled``; CutMix
pastes a box of the paired image whose side is ``sqrt(1 - lam)`` of the image's, centred anywhere (cut off at the
border), and ``lam`` becomes the share of the image left uncovered. The target is the same blend of the two
labels; since the cross-entropy is linear in its target, the loss is ``lam * loss(y) + (1 - lam) * loss(y_rolled)``,
so label smoothing composes exactly as with torchvision's one-hot blend.

Per batch, with probability ``mix_prob`` the batch is mixed at all; when both alphas are above 0, CutMix is chosen
with probability ``cutmix_prob`` (torchvision's ``RandomChoice([CutMix, MixUp], p=[cutmix_prob, 1 - cutmix_prob])``).
The draws come from a Python ``random.Random`` of the run's seed, never from the device, so mixing never makes the
step wait for the host; its state is part of the training state (resumed to the bit). tests/test_mixing.py compares
the distribution with torchvision's transforms.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mixed:
    images: object  # torch.Tensor, the blended batch
    partners: object  # torch.Tensor, the labels each image was blended with
    lam: float  # the share of each image's own label in its target


@dataclass
class Mixing:
    mixup_alpha: float = 0.0  # 0 = off
    cutmix_alpha: float = 0.0  # 0 = off
    mix_prob: float = 1.0  # probability that a batch is mixed at all
    cutmix_prob: float = 0.5  # with both on: probability of CutMix rather than MixUp
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self):
        self.rng = random.Random(self.seed)

    @property
    def on(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, images, labels) -> Mixed | None:
        """The batch mixed, or None when this batch is left as it is."""
        if not self.on or self.rng.random() >= self.mix_prob:
            return None
        cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or self.rng.random() < self.cutmix_prob)
        alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
        lam = self.rng.betavariate(alpha, alpha)
        rolled = images.roll(1, 0)
        if not cutmix:
            return Mixed(images * lam + rolled * (1.0 - lam), labels.roll(1, 0), lam)
        height, width = images.shape[-2:]
        x, y = self.rng.randrange(width), self.rng.randrange(height)
        half = 0.5 * math.sqrt(1.0 - lam)
        half_w, half_h = int(half * width), int(half * height)
        x1, y1, x2, y2 = max(x - half_w, 0), max(y - half_h, 0), min(x + half_w, width), min(y + half_h, height)
        mixed = images.clone()
        mixed[..., y1:y2, x1:x2] = rolled[..., y1:y2, x1:x2]
        return Mixed(mixed, labels.roll(1, 0), 1.0 - (x2 - x1) * (y2 - y1) / (width * height))

    def state(self) -> list:
        """The draws' state, as plain numbers (``torch.load(weights_only=True)`` reads it back)."""
        version, internal, gauss = self.rng.getstate()
        return [version, list(internal), gauss]

    def restore(self, state) -> None:
        version, internal, gauss = state
        self.rng.setstate((version, tuple(internal), gauss))
