"""Write-up 004's network: seven conv-BN-PReLU blocks with squeeze-and-excitation channel weights.

Each block scales its channels by weights a small fully connected layer
computes from the block's own output (global average pool -> FC -> ReLU ->
FC -> sigmoid). A 2x2 max-pool follows every other block (after blocks 2, 4
and 6), then global average pooling and one FC layer to the classes. The
write-up gives no widths; ``width`` w gives w, w, 2w, 2w, 4w, 4w, 8w channels.
"""

from __future__ import annotations

from hpo.core.lazy import lazy
from hpo.models import SIZE, bounds, register_model

nn = lazy("torch.nn")


def se_block(c_in: int, c_out: int, reduction: int) -> nn.Sequential:
    from hpo.models.squeeze_excite import SqueezeExcite

    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.PReLU(c_out), SqueezeExcite(c_out, reduction))


@register_model("se_prelu_net", check=bounds(width=SIZE, reduction=SIZE))
def se_prelu_net(num_classes: int, in_channels: int, image_size: tuple[int, int], width: int = 32,
                 reduction: int = 8) -> nn.Module:
    layers, c_in = [], in_channels
    for index, multiple in enumerate((1, 1, 2, 2, 4, 4, 8), start=1):
        layers.append(se_block(c_in, width * multiple, reduction))
        c_in = width * multiple
        if index % 2 == 0:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
