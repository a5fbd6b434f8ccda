"""Registries: a dict from a name to a constructor, filled by a decorator.

Every extension point (models, data sets, optimizers, schedulers, samplers,
pruners) is one ``Registry``. The study validator and ``--help`` list names
from here, so messages never go stale::

    MODELS = Registry("model")

    @MODELS.register("mlp")
    def mlp(num_classes, in_channels, image_size, hidden=128): ...

    MODELS.get("mlp")(num_classes=10, in_channels=1, image_size=(8, 8))

It lives in ``data/``, the lowest layer, because the data set registry needs it
and ``data/`` imports nothing from ``models/`` or ``hpo/``; they import it from
here.
"""

from __future__ import annotations

import fnmatch
import inspect
from typing import Any, Callable, Iterable, Mapping


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._checks: dict[str, Callable[..., None]] = {}

    def register(self, name: str, check: Callable[..., None] | None = None
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """``check``, if given, takes the user's arguments and raises for a value the constructor would
        refuse, without building anything: the study validator calls it when the file is read."""
        def add(constructor: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = constructor
            if check is not None:
                self._checks[name] = check
            return constructor

        return add

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return self._entries[name]

    def check(self, name: str, args: Mapping[str, Any]) -> None:
        """Judge the values of the user's arguments for ``name`` (a no-op for entries without a check)."""
        self.get(name)
        if name in self._checks:
            self._checks[name](**args)

    def arguments(self, name: str, reserved: Iterable[str] = ()) -> list[str]:
        """The keyword arguments a user may give ``name`` (the reserved ones are filled by hpo)."""
        skip = set(reserved) | {"self"}
        params = inspect.signature(self.get(name)).parameters.values()
        return [p.name for p in params
                if p.name not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
