"""timm's models by name, an optional extra: ``model: {name: timm/resnet18d, drop_rate: 0.1}``.

Installed with ``pip install -e ".[timm]"``. Built through ``timm.create_model(NAME, pretrained=False,
num_classes=, in_chans=, **args)``: nothing is downloaded, and timm adapts the first convolution to the data's
channels itself (for one channel it sums a 3-channel stem's weights, ``pretrained: PATH`` included). The
arguments and the image size are judged as for torchvision's models, by building on the ``meta`` device.
"""

from __future__ import annotations

from typing import Any

from hpo.models import UnknownArgument, UnknownModel, module_parameters

PREFIX = "timm/"
INSTALL = 'pip install -e ".[timm]" (or pip install timm)'


def _timm():
    try:
        import timm
    except ImportError:
        raise UnknownModel(f"timm models need the timm package, which is not installed; {INSTALL}") from None
    return timm


def _network(name: str, num_classes: int, in_channels: int, args: dict[str, Any]):
    timm = _timm()
    if not timm.is_model(name):
        raise UnknownModel(f"{PREFIX}{name} is not one of timm's models (timm.list_models() lists them, e.g. "
                         f"timm/resnet18d, timm/efficientnet_b0, timm/convnext_atto)")
    unknown = sorted(set(args) - module_parameters(timm.models.model_entrypoint(name)))
    if unknown:
        raise UnknownArgument(f"{PREFIX}{name} does not take {', '.join(unknown)} (no class or function of its "
                              f"timm module has such a parameter)")
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **args)
    except TypeError as err:  # an argument the architecture does not take
        raise UnknownArgument(f"{PREFIX}{name} does not take these arguments ({err})") from None
    except (ValueError, AssertionError) as err:
        raise ValueError(f"{PREFIX}{name} refuses its arguments ({err or type(err).__name__})") from None


def check(name: str, args: dict[str, Any], num_classes: int = 10, in_channels: int = 3,
          image_size: tuple[int, int] | None = None) -> None:
    import torch

    with torch.device("meta"):
        network = _network(name, num_classes, in_channels, args)
        if image_size is not None:
            try:
                with torch.no_grad():
                    network.eval()(torch.zeros(2, in_channels, *image_size, device="meta"))
            except Exception as err:  # noqa: BLE001 - whatever the architecture raises for a size it cannot take
                raise ValueError(f"{PREFIX}{name} cannot take {image_size[0]}x{image_size[1]} images "
                                 f"({' '.join(str(err).split())[:160]})") from None


def build(name: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int],
          pretrained: str | None = None, **args: Any):
    network = _network(name, num_classes, in_channels, args)
    if pretrained:
        from hpo.models.pretrained import load_pretrained
        load_pretrained(network, pretrained)
    return network
