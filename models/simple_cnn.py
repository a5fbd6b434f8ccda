"""Write-up 002's SimpleCNN: four conv blocks (32-64-128-256, 3x3, pad 1, BN, ReLU, 2x2 max-pool), FC 512."""

from __future__ import annotations

from hpo.core.lazy import lazy
from hpo.models import DROPOUT, SIZE, bounds, register_model

nn = lazy("torch.nn")


@register_model("simple_cnn", check=bounds(hidden=SIZE, dropout=DROPOUT))
def simple_cnn(num_classes: int, in_channels: int, image_size: tuple[int, int], hidden: int = 512,
               dropout: float = 0.0) -> nn.Module:
    blocks, width = [], in_channels
    for out in (32, 64, 128, 256):
        blocks += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        width = out
    height, breadth = image_size[0] // 16, image_size[1] // 16
    if height < 1 or breadth < 1:
        raise ValueError(f"simple_cnn halves the image four times and needs at least 16x16, got {image_size}")
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(256 * height * breadth, hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, num_classes))
