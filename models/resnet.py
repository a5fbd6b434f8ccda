"""ResNet-18/34/50 from torchvision, with the ImageNet stem or the CIFAR stem.

``stem: imagenet`` is torchvision's 7x7 stride-2 convolution and max-pool
(for 224-pixel images). ``stem: cifar`` is a 3x3 stride-1 convolution and no
max-pool, the usual choice for 32-pixel images, which the ImageNet stem would
shrink to 8x8 before the first block.
"""

from __future__ import annotations

from hpo.core.lazy import lazy
from hpo.models import register_model

nn = lazy("torch.nn")
torchvision = lazy("torchvision")

STEMS = ("imagenet", "cifar")


def check_stem(stem: str = "imagenet", **others) -> None:
    """The study validator's check of a ResNet's arguments (see hpo/core/registry.py)."""
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")


def resnet(depth: int, num_classes: int, in_channels: int, stem: str, zero_init_residual: bool) -> nn.Module:
    check_stem(stem)
    build = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34, 50: torchvision.models.resnet50}[depth]
    model = build(weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


@register_model("resnet18", check=check_stem)
def resnet18(num_classes: int, in_channels: int, image_size, stem: str = "imagenet",
             zero_init_residual: bool = False) -> nn.Module:
    return resnet(18, num_classes, in_channels, stem, zero_init_residual)


@register_model("resnet34", check=check_stem)
def resnet34(num_classes: int, in_channels: int, image_size, stem: str = "imagenet",
             zero_init_residual: bool = False) -> nn.Module:
    return resnet(34, num_classes, in_channels, stem, zero_init_residual)


@register_model("resnet50", check=check_stem)
def resnet50(num_classes: int, in_channels: int, image_size, stem: str = "imagenet",
             zero_init_residual: bool = False) -> nn.Module:
    return resnet(50, num_classes, in_channels, stem, zero_init_residual)
