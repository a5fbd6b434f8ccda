"""The user's own code, named in a study file as ``module:callable``: a model (``model.name``) or a data set
(``data.name``).

The module is looked for in the given folders (the study file's), then the current directory, then
``sys.path`` (an installed package). Only a study file or a command line names such code: nothing a store or a
checkpoint holds is ever imported.
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
        raise ValueError(f"importing {module_name} failed: {error_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - whatever the user's module raises while it is imported
        raise ValueError(f"importing {module_name} failed: {error_line(err)}") from None
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


def error_line(err: BaseException) -> str:
    """``err`` and the last place in the user's code it came from: ``ValueError: boom (mynets.py:3)``."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "importlib" not in f.filename]
    place = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    if isinstance(err, SyntaxError) and err.filename:
        place = f" ({Path(err.filename).name}:{err.lineno})"
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}{place}"


def user_arguments(constructor: Callable[..., Any], filled: Iterable[str] = ()) -> list[inspect.Parameter]:
    """The parameters a study may give (``filled``: those hpo fills itself)."""
    try:
        params = inspect.signature(constructor).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        return []
    return [p for p in params if p.name not in filled and p.name != "self"
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def takes_any_keyword(constructor: Callable[..., Any]) -> bool:
    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(constructor).parameters.values())
    except (TypeError, ValueError):
        return False


def taken(constructor: Callable[..., Any], values: dict[str, Any]) -> dict[str, Any]:
    """Those of ``values`` whose names the callable's signature takes."""
    try:
        params = inspect.signature(constructor).parameters
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in values.items() if k in params}
