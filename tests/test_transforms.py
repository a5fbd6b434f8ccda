"""Our batched augmentations draw from the same distributions as torchvision's per-image CPU transforms.

Each case augments one image N times both ways (independent seeds) and
compares, pixel by pixel, the mean and standard deviation of the N results.
A slightly different setting must fail the same comparison, so the test can
tell distributions apart.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from hpo.data.policies import OPS, SIGNED, Policy, apply, magnitude_table
from hpo.data.transforms import Augmentation

N = 8000  # the per-pixel statistics' sampling noise is then about 0.001, below the tolerances
SIZE = 32
MEAN_TOLERANCE = 0.003  # mean |difference| of the per-pixel means, 0..1 scale
STD_TOLERANCE = 0.004  # ... of the per-pixel standard deviations


def pattern() -> torch.Tensor:
    """A smooth, non-symmetric colour pattern in 0..1 (so shifts, flips and rotations all show)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    return torch.stack([0.5 + 0.4 * torch.sin(5 * x + 2 * y), 0.2 + 0.6 * y * y, 0.3 + 0.5 * x * (1 - y)])


def inner() -> torch.Tensor:
    """Pixels a rotation never moves outside the image: torchvision fills borders its own way."""
    y, x = torch.meshgrid(torch.arange(SIZE) - (SIZE - 1) / 2, torch.arange(SIZE) - (SIZE - 1) / 2, indexing="ij")
    return (x.square() + y.square()).sqrt() < SIZE / 2 - 3


def pixel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    images = images[..., inner()]
    return images.mean(0), images.std(0)


def torchvision_statistics(transform) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(2)
    image = pattern()
    return pixel_statistics(torch.stack([transform(image) for _ in range(N)]))


def statistics_gap(ours: Augmentation, reference) -> tuple[float, float]:
    mean, std = pixel_statistics(ours(pattern().expand(N, -1, -1, -1).clone(), torch.Generator().manual_seed(1)))
    return (mean - reference[0]).abs().mean().item(), (std - reference[1]).abs().mean().item()


BILINEAR, NEAREST = v2.InterpolationMode.BILINEAR, v2.InterpolationMode.NEAREST
CASES = {  # name: (ours, torchvision's, ours with a slightly different setting)
    "crop with padding + flip": (Augmentation(crop_padding=4, hflip=0.5),
                                 v2.Compose([v2.RandomCrop(SIZE, padding=4), v2.RandomHorizontalFlip()]),
                                 Augmentation(crop_padding=4, hflip=0.3)),
    "rotation": (Augmentation(rotation=15), v2.RandomRotation(15, interpolation=BILINEAR),
                 Augmentation(rotation=10)),
    "random resized crop": (Augmentation(rrc_scale_min=0.35),
                            v2.RandomResizedCrop(SIZE, scale=(0.35, 1.0), antialias=False),
                            Augmentation(rrc_scale_min=0.5)),
    "colour jitter 0.5": (Augmentation(jitter=0.5), v2.ColorJitter(0.2, 0.2, 0.2, 0.05), Augmentation(jitter=0.35)),
    "trivialaugment": (Policy("trivialaugment"), v2.TrivialAugmentWide(), Policy("randaugment", ops=1, magnitude=15)),
    "randaugment 2 x 9": (Policy("randaugment", ops=2, magnitude=9), v2.RandAugment(num_ops=2, magnitude=9),
                          Policy("randaugment", ops=2, magnitude=7)),
    "random erasing": (Augmentation(erasing=0.5, erasing_scale=0.33).erase,
                       v2.RandomErasing(p=0.5, scale=(0.02, 0.33), value=0),
                       Augmentation(erasing=0.5, erasing_scale=0.25).erase),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_distribution_as_torchvision(case):
    ours, theirs, different = CASES[case]
    reference = torchvision_statistics(theirs)
    mean_gap, std_gap = statistics_gap(ours, reference)
    assert mean_gap < MEAN_TOLERANCE and std_gap < STD_TOLERANCE, (mean_gap, std_gap)
    mean_gap, std_gap = statistics_gap(different, reference)
    assert mean_gap >= MEAN_TOLERANCE or std_gap >= STD_TOLERANCE, ("the comparison cannot tell", mean_gap, std_gap)


@pytest.mark.parametrize("op", OPS)
def test_each_policy_operation_is_torchvisions(op):
    """Image by image, every operation of the policies at several magnitudes gives torchvision's pixels."""
    policy = v2.TrivialAugmentWide()
    image = pattern().unsqueeze(0)
    for level in (0, 7, 18, 30):
        for sign in ((1, -1) if op in SIGNED else (1,)):
            magnitude = magnitude_table("trivialaugment", SIZE, SIZE).get(op, [0.0] * 31)[level] * sign
            ours = apply(image, torch.tensor([OPS.index(op)]), torch.tensor([magnitude]))
            theirs = policy._apply_image_or_video_transform(image, op, magnitude, interpolation=NEAREST,
                                                            fill=policy._fill)
            assert torch.allclose(ours, theirs, atol=1e-5), (op, magnitude, (ours - theirs).abs().max())
