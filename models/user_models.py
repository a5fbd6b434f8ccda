"""The user's own network: ``model: {name: mypkg.nets:WideNet, depth: 16}``.

``name`` is an import path ``module:callable``, a class or a function that returns an ``nn.Module``, found
as ``hpo/core/user_code.py`` says: the study file's folder, then the current directory, then ``sys.path``.
The callable receives ``num_classes``, ``in_channels`` and ``image_size`` (a (height, width) tuple) where
its signature takes them, and the other ``model:`` fields as keyword arguments, each
checked against its signature when the study file is read: unknown names, missing required ones and values
of another type than the default's are refused in one line.

Only a study file or a command line names such a module: a checkpoint that names one is never imported
from (``hpo/train/checkpoint.py`` keeps the trained network as an exported program instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from hpo.core.user_code import load_callable, taken

DATA_ARGUMENTS = ("num_classes", "in_channels", "image_size")


def build(path: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int],
          pretrained: str | None = None, folders: Iterable[str | Path] = (), **args: Any):
    import torch.nn as nn

    constructor = load_callable(path, folders)
    data = {"num_classes": num_classes, "in_channels": in_channels, "image_size": tuple(image_size)}
    network = constructor(**taken(constructor, data), **args)
    if not isinstance(network, nn.Module):
        raise ValueError(f"{path} returned a {type(network).__name__}, not a torch.nn.Module")
    if pretrained:
        from hpo.models.pretrained import load_pretrained
        load_pretrained(network, pretrained)
    return network
