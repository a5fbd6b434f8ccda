"""Model architectures: ``@register_model`` functions, built by ``create_model``.

The model modules bind torch lazily (``hpo/core/lazy.py``): the study validator
reads the registry's names and arguments without loading torch.

Every model function takes ``num_classes``, ``in_channels`` and
``image_size`` (filled from the data) plus its own keyword arguments (the
study's ``model`` fields)::

    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8), width=32)

May import: hpo.core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from hpo.core.registry import Registry

if TYPE_CHECKING:
    import torch.nn as nn

MODELS = Registry("model")
register_model = MODELS.register

DATA_ARGUMENTS = ("num_classes", "in_channels", "image_size")  # filled from the data, never by the user
COMMON_ARGUMENTS = ("pretrained",)  # every model takes these (handled by create_model)


def bounds(**allowed: tuple[float, float | None]) -> Callable[..., None]:
    """A model's check for ``@register_model(name, check=...)``: each named argument, where the study gives it,
    within [low, high] (high None: no upper bound), e.g. ``bounds(width=(1, None), dropout=(0, 1))``."""
    def check(**args: Any) -> None:
        for name, (low, high) in allowed.items():
            value = args.get(name)
            if value is not None and not (low <= value and (high is None or value <= high)):
                rule = f">= {low:g}" if high is None else f"from {low:g} to {high:g}"
                raise ValueError(f"{name} must be {rule}, got {value!r}")
    return check


SIZE, DROPOUT = (1, None), (0, 1)  # a count of units, channels or blocks; a probability


def create_model(name: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int],
                 pretrained: str | None = None, **args: Any) -> nn.Module:
    """Build a registered model; ``pretrained`` is a local weights file (models/pretrained.py)."""
    model = MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **args)
    if pretrained:
        from models.pretrained import load_pretrained
        load_pretrained(model, pretrained)
    return model


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


# Importing the modules fills the registry.
from models import digits, resnet, se_prelu_net, simple_cnn  # noqa: E402,F401
