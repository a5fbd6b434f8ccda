"""A library bound at import, loaded on first use: reading and refusing a study file stays instant.

    torch = lazy("torch")   # nothing loaded yet
    torch.zeros(3)          # torch is imported here, once

The modules the study validator reaches (the registries of data sets, models,
optimizers, samplers and pruners, and the constants they check against) bind
torch, torchvision and Optuna this way, so ``hpo check`` of a bad file answers
in a fraction of a second, before any of them loads (tests/test_startup.py).
Everything else imports them normally. A lazily bound name works for
attribute use (``torch.stack``, ``nn.Module`` inside a function); code that
runs at import time, such as a class deriving from ``nn.Module``, loads the
library then, so it belongs in a module imported only when needed.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    __slots__ = ("_name",)

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, loaded on first use>"


def lazy(name: str) -> Any:
    """``name`` (e.g. ``"torch.nn"``), imported when an attribute of it is first read."""
    return LazyModule(name)
