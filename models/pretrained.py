"""Loading pretrained weights from a local file: never a download.

Accepted: a plain state dict (torchvision's ``*.pth`` files), a training
checkpoint holding one under ``state_dict`` or ``model``, or an hpo final
checkpoint. Weights whose shapes differ from the model's (a head for another
class count, a stem for another image size) are left as initialised, and
listed; a 3-channel first convolution loaded into a 1-channel model is summed
over its input channels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a file that is not a weights file
        raise ValueError(f"{path}: not a weights file torch can load ({type(err).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path}: holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in loaded.items()}  # DataParallel prefixes


def load_pretrained(model: nn.Module, path: str | Path) -> list[str]:
    """Load what fits; returns the names of the model's weights that kept their initial values."""
    source = read_state_dict(path)
    target = model.state_dict()
    loadable = {}
    for name, tensor in source.items():
        if name not in target:
            continue
        want = target[name].shape
        if tensor.shape == want:
            loadable[name] = tensor
        elif tensor.ndim == 4 and want[1] == 1 and tensor.shape[1] == 3 and tensor.shape[2:] == want[2:] \
                and tensor.shape[0] == want[0]:
            loadable[name] = tensor.sum(dim=1, keepdim=True)  # RGB filters -> grayscale
    model.load_state_dict(loadable, strict=False)
    skipped = sorted(set(target) - set(loadable))
    if skipped:
        warnings.warn(f"{path}: {len(skipped)} weights not loaded (shape or name differs), e.g. "
                      f"{', '.join(skipped[:4])}", stacklevel=2)
    return skipped
