"""torchvision's classification models by name: ``model: {name: torchvision/efficientnet_b0, dropout: 0.3}``.

Every name ``torchvision.models.list_models(module=torchvision.models)`` lists (the classifiers, not the
detection, segmentation, video or quantized ones) is built through torchvision's own builder with
``weights=None`` (nothing is downloaded): ``num_classes`` comes from the data, the other ``model:`` fields
are the builder's keyword arguments (``dropout``, ``stochastic_depth_prob``, ``width_mult``, ...).

- **Arguments** are judged by building the model on PyTorch's ``meta`` device (no memory, no weights): an
  argument the architecture does not take is refused in one line when the study file is read.
- **Grey images:** torchvision's classifiers take three channels. For one-channel data every family gets
  the same treatment: the image is repeated to three channels in front of the network
  (:class:`RepeatChannels`), so the architecture, and any 3-channel pretrained weights, stay as they are.
- **Image size:** one forward pass on the ``meta`` device at the data's size; a size the architecture cannot
  take is refused with the smallest square one it can. Vision transformers (``vit_*``) are built for the
  data's size (their ``image_size`` argument), which must be square and a multiple of the patch size.
- ``pretrained: PATH`` loads a local weights file into the network as for the built-in models.
"""

from __future__ import annotations

import warnings
from typing import Any

from hpo.models import UnknownArgument, UnknownModel, module_parameters

PREFIX = "torchvision/"
AUXILIARY_HEADS = ("googlenet", "inception_v3")  # built without their auxiliary classifiers
LARGEST_CHECKED = 1024  # the largest square size searched for an architecture's smallest


def names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _builder(name: str):
    import torchvision

    if name not in names():
        import difflib

        close = difflib.get_close_matches(name.lower().replace("-", "_"), names(), n=1, cutoff=0.6)
        raise UnknownModel(f"{PREFIX}{name} is not one of torchvision's classification models; "
                           + (f"did you mean {' or '.join(PREFIX + n for n in close)}? " if close else "")
                           + f"torchvision.models.list_models(module=torchvision.models) lists them all, e.g. "
                           f"{', '.join(PREFIX + n for n in ('resnet18', 'efficientnet_b0', 'mobilenet_v3_small', 'convnext_tiny'))}")
    return torchvision.models.get_model_builder(name)


def _network(name: str, num_classes: int, image_size: tuple[int, int], args: dict[str, Any]):
    builder = _builder(name)
    unknown = sorted(set(args) - module_parameters(builder))
    if unknown:
        raise UnknownArgument(f"{PREFIX}{name} does not take {', '.join(unknown)} (no class or function of "
                              f"{builder.__module__} has such a parameter)")
    if name.startswith("vit_") and "image_size" not in args:
        args = {**args, "image_size": image_size[0]}
    if name in AUXILIARY_HEADS:  # their extra training outputs are not a classifier's one tensor
        if args.get("aux_logits"):
            raise ValueError(f"{PREFIX}{name}: aux_logits must be false (hpo trains on the main output)")
        args = {"aux_logits": False, "init_weights": False, **args}
    try:
        with warnings.catch_warnings():  # inception_v3's notice that its default initialisation will change
            warnings.simplefilter("ignore", FutureWarning)
            return builder(weights=None, num_classes=num_classes, **args)
    except TypeError as err:  # an argument the architecture does not take
        raise UnknownArgument(f"{PREFIX}{name} does not take these arguments ({err})") from None
    except (ValueError, AssertionError) as err:  # a value it refuses (a vit image_size off its patch grid)
        raise ValueError(f"{PREFIX}{name} refuses its arguments ({err or type(err).__name__})") from None


def check(name: str, args: dict[str, Any], num_classes: int = 10, in_channels: int = 3,
          image_size: tuple[int, int] | None = None) -> None:
    """Raise ValueError, in one line, for a name, an argument or an image size ``name`` cannot take; builds
    on the meta device only."""
    import torch

    with torch.device("meta"):
        network = _network(name, num_classes, image_size or (224, 224), args)
        if image_size is not None and not _takes(network, image_size):
            smallest = _smallest_size(name, num_classes, args)
            hint = f"the smallest square size it takes is {smallest}x{smallest}" if smallest else \
                f"it takes no square size up to {LARGEST_CHECKED}"
            raise ValueError(f"{PREFIX}{name} cannot take {image_size[0]}x{image_size[1]} images; {hint} "
                             f"(resize the data, or choose another model)")


def _takes(network, image_size: tuple[int, int]) -> bool:
    import torch

    try:
        with torch.no_grad():
            network.eval()(torch.zeros(2, 3, *image_size, device="meta"))
        return True
    except Exception:  # noqa: BLE001 - whatever the architecture raises for a size it cannot take
        return False


def _smallest_size(name: str, num_classes: int, args: dict[str, Any]) -> int | None:
    """The smallest square size the architecture takes (sizes are assumed to work from some size upwards)."""
    import torch

    def works(size: int) -> bool:
        try:
            with torch.device("meta"):
                return _takes(_network(name, num_classes, (size, size), args), (size, size))
        except ValueError:
            return False

    if not works(LARGEST_CHECKED):
        return None
    low, high = 1, LARGEST_CHECKED  # works(high); find the first size that works
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if works(middle) else (middle + 1, high)
    return low


def build(name: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int],
          pretrained: str | None = None, **args: Any):
    network = _network(name, num_classes, image_size, args)
    if pretrained:
        from hpo.models.pretrained import load_pretrained
        load_pretrained(network, pretrained)
    if in_channels == 3:
        return network
    from hpo.models.channels import RepeatChannels
    return RepeatChannels(network, in_channels, 3)
