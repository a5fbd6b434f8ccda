"""Model architectures: ``@register_model`` functions, built by ``create_model``.

Every model function takes ``num_classes``, ``in_channels`` and
``image_size`` (filled from the data) plus its own keyword arguments (the
study's ``model`` fields)::

    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8), width=32)
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from hpo.registry import Registry

MODELS = Registry("model")
register_model = MODELS.register

DATA_ARGUMENTS = ("num_classes", "in_channels", "image_size")  # filled from the data, never by the user


def create_model(name: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int],
                 **args: Any) -> nn.Module:
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **args)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


# Importing the modules fills the registry.
from models import digits  # noqa: E402,F401
