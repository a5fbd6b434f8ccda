"""Registries: a dict from a name to a constructor, filled by a decorator.

Every extension point (models, data sets, optimizers, schedulers, samplers,
pruners) is one ``Registry``. The study validator and ``--help`` list names
from here, so messages never go stale::

    MODELS = Registry("model")

    @MODELS.register("mlp")
    def mlp(num_classes, in_channels, image_size, hidden=128): ...

    MODELS.get("mlp")(num_classes=10, in_channels=1, image_size=(8, 8))
"""

from __future__ import annotations

import fnmatch
import inspect
from typing import Any, Callable, Iterable


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(constructor: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = constructor
            return constructor

        return add

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return self._entries[name]

    def arguments(self, name: str, reserved: Iterable[str] = ()) -> list[str]:
        """The keyword arguments a user may give ``name`` (the reserved ones are filled by hpo)."""
        skip = set(reserved) | {"self"}
        params = inspect.signature(self.get(name)).parameters.values()
        return [p.name for p in params
                if p.name not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
