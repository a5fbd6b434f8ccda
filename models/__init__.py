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

from typing import TYPE_CHECKING, Any, Callable, Mapping

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


class UnknownModel(ValueError):
    """A model name its source does not have (or a source that is not installed): the study's ``model.name``."""


class UnknownArgument(ValueError):
    """An argument the model does not take (torchvision's and timm's builders pass any keyword on)."""


def module_parameters(entrypoint: Callable[..., Any]) -> set[str]:
    """The keyword names that the classes and functions of ``entrypoint``'s module take: what a torchvision or
    timm builder may pass its ``**kwargs`` on to. (Some of their classes also take ``**kwargs`` and ignore
    them, so building is no proof that an argument is used.)"""
    import inspect
    import sys

    module = sys.modules[entrypoint.__module__]
    names: set[str] = set()
    for obj in vars(module).values():
        if getattr(obj, "__module__", None) != module.__name__ or not callable(obj):
            continue
        try:
            params = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters.values()
        except (TypeError, ValueError):
            continue
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return names - {"self", "weights", "progress", "pretrained"}


def source_of(name: str) -> str:
    """Where a model name comes from: ``builtin`` (this package's registry), ``torchvision`` (torchvision/NAME),
    ``timm`` (timm/NAME) or ``user`` (module:callable, the user's own code)."""
    if name.startswith(TORCHVISION):
        return "torchvision"
    if name.startswith(TIMM):
        return "timm"
    return "user" if ":" in name else "builtin"


TORCHVISION, TIMM = "torchvision/", "timm/"


def create_model(name: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int],
                 pretrained: str | None = None, import_from: str | None = None, **args: Any) -> nn.Module:
    """Build a model from any of the four sources (``source_of``); ``pretrained`` is a local weights file
    (models/pretrained.py), ``import_from`` the folder a user's module is looked for in first."""
    data = {"num_classes": num_classes, "in_channels": in_channels, "image_size": tuple(image_size)}
    source = source_of(name)
    if source == "torchvision":
        from hpo.models import torchvision_models
        return torchvision_models.build(name.removeprefix(TORCHVISION), pretrained=pretrained, **data, **args)
    if source == "timm":
        from hpo.models import timm_models
        return timm_models.build(name.removeprefix(TIMM), pretrained=pretrained, **data, **args)
    if source == "user":
        from hpo.models import user_models
        return user_models.build(name, pretrained=pretrained, folders=[import_from] if import_from else [],
                                 **data, **args)
    model = MODELS.get(name)(**data, **args)
    if pretrained:
        from hpo.models.pretrained import load_pretrained
        load_pretrained(model, pretrained)
    return model


def check_model(name: str, args: Mapping[str, Any], num_classes: int | None = None, in_channels: int | None = None,
                image_size: tuple[int, int] | None = None) -> None:
    """Raise ValueError, in one line, for arguments (and, given the data's shape, an image size) the model
    cannot take. The built-in models are judged by their registered checks without torch; torchvision's and
    timm's by building them on the meta device; the user's are built (on the data) by ``create_model``."""
    source, args = source_of(name), {k: v for k, v in args.items() if k not in ("pretrained", "import_from")}
    data = {"num_classes": num_classes or 10, "in_channels": in_channels or 3, "image_size": image_size}
    if source == "torchvision":
        from hpo.models import torchvision_models
        torchvision_models.check(name.removeprefix(TORCHVISION), args, **data)
    elif source == "timm":
        from hpo.models import timm_models
        timm_models.check(name.removeprefix(TIMM), args, **data)
    elif source == "builtin":
        MODELS.check(name, args)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


# Importing the modules fills the registry.
from hpo.models import digits, resnet, se_prelu_net, simple_cnn  # noqa: E402,F401
