"""What the batch transforms share: grayscale as torchvision computes it, and small constants on the device."""

from __future__ import annotations

import functools

from hpo.core.lazy import lazy

torch = lazy("torch")

LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale weighs R, G and B


def gray(x: torch.Tensor) -> torch.Tensor:
    """The grayscale of a batch (N, 1, H, W); a one-channel batch is its own."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


@functools.lru_cache(maxsize=64)
def constant(values: tuple, device, dtype) -> torch.Tensor:
    """A small tensor of ``values`` on ``device``, made once: copying it from the host at every step would make
    the step wait for the device."""
    return torch.tensor(values, device=device, dtype=dtype)
