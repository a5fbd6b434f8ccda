"""The user's own network: ``model: {name: mypkg.nets:WideNet, depth: 16}``.

``name`` is an import path ``module:callable``, a class or a function that returns an ``nn.Module``. The
module is looked for in the study file's folder, then the current directory, then ``sys.path`` (an
installed package). The callable receives ``num_classes``, ``in_channels`` and ``image_size`` (a (height,
width) tuple) where its signature takes them, and the other ``model:`` fields as keyword arguments, each
checked against its signature when the study file is read: unknown names, missing required ones and values
of another type than the default's are refused in one line.

Only a study file or a command line names such a module: a checkpoint that names one is never imported
from (``hpo/train/checkpoint.py`` keeps the trained network as an exported program instead).
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

# module:callable, each part dotted Python names
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")
DATA_ARGUMENTS = ("num_classes", "in_channels", "image_size")


def is_import_path(name: str) -> bool:
    return isinstance(name, str) and ":" in name


def load_callable(path: str, folders: Iterable[str | Path] = ()) -> Callable[..., Any]:
    """The callable ``module:name`` names, imported with ``folders`` (then the current directory) looked in
    before ``sys.path``. Raises ValueError in one line: a malformed path, a module that is not found or
    raises on import (its exception and the file:line it came from), a missing or uncallable attribute."""
    if not IMPORT_PATH.match(path):
        raise ValueError(f"{path!r} is not an import path; write module:callable, e.g. mynets:TinyNet or "
                         f"mypkg.models:build")
    module_name, _, attribute = path.partition(":")
    where = [str(Path(f).resolve()) for f in folders] + [str(Path.cwd())]
    added = [w for w in dict.fromkeys(where) if w not in sys.path]
    sys.path[:0] = added
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise ValueError(f"no module {module_name!r} in {', '.join(dict.fromkeys(where))} or sys.path (a "
                             f"module is looked for in the study file's folder, the current directory, then "
                             f"the installed packages)") from None
        raise ValueError(f"importing {module_name} failed: {_one_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - whatever the user's module raises while it is imported
        raise ValueError(f"importing {module_name} failed: {_one_line(err)}") from None
    finally:
        for entry in added:
            if entry in sys.path:
                sys.path.remove(entry)
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"module {module_name} ({getattr(module, '__file__', '?')}) has no {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{path} is a {type(target).__name__}, not a class or a function")
    return target


def _one_line(err: BaseException) -> str:
    """``err`` and the last place in the user's code it came from: ``ValueError: boom (mynets.py:3)``."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "importlib" not in f.filename]
    place = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    if isinstance(err, SyntaxError) and err.filename:
        place = f" ({Path(err.filename).name}:{err.lineno})"
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}{place}"


def user_arguments(constructor: Callable[..., Any]) -> list[inspect.Parameter]:
    """The parameters a study may give (the data's ones are filled by hpo)."""
    try:
        params = inspect.signature(constructor).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        return []
    return [p for p in params if p.name not in DATA_ARGUMENTS and p.name != "self"
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def takes_any_keyword(constructor: Callable[..., Any]) -> bool:
    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(constructor).parameters.values())
    except (TypeError, ValueError):
        return False


def data_arguments(constructor: Callable[..., Any], num_classes: int, in_channels: int,
                   image_size: tuple[int, int]) -> dict[str, Any]:
    """The data's values for the parameters of these names that the callable takes."""
    values = {"num_classes": num_classes, "in_channels": in_channels, "image_size": tuple(image_size)}
    try:
        params = inspect.signature(constructor).parameters
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in values.items() if k in params}


def build(path: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int],
          pretrained: str | None = None, folders: Iterable[str | Path] = (), **args: Any):
    import torch.nn as nn

    constructor = load_callable(path, folders)
    network = constructor(**data_arguments(constructor, num_classes, in_channels, image_size), **args)
    if not isinstance(network, nn.Module):
        raise ValueError(f"{path} returned a {type(network).__name__}, not a torch.nn.Module")
    if pretrained:
        from hpo.models.pretrained import load_pretrained
        load_pretrained(network, pretrained)
    return network
