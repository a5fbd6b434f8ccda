"""The user's own data set: ``data: {name: mypkg.data:make_splits, size: 32}``.

``name`` is an import path ``module:callable`` (found as ``hpo/core/user_code.py`` says); the other
``data:`` fields are its keyword arguments, checked against its signature when the study file is read. It
returns a mapping with ``train`` and optionally ``val``, ``test`` and ``classes`` (class names, index =
label). Each part is an ``(images, labels)`` pair of tensors or a torchvision-style ``Dataset`` of (image,
label) items (``hpo/data/images.py: labelled_from``). Without ``test`` (or ``val``), hpo splits it off
``train`` by ``data.test_fraction`` (``data.val_fraction``), as for any data set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from hpo.core.user_code import error_line, load_callable
from hpo.data.errors import DataError
from hpo.data.images import DataSource, labelled_from


def load(path: str, folders: Iterable[str | Path] = (), **args: Any) -> DataSource:
    try:
        make = load_callable(path, folders)
    except ValueError as err:
        raise DataError(f"{path}: {err}", "data.name") from None
    try:
        parts = make(**args)
    except Exception as err:  # noqa: BLE001 - whatever the user's code raises: its type and file:line
        raise DataError(f"{path} raised {error_line(err)}", "data.name") from None
    try:
        if not isinstance(parts, dict) or "train" not in parts:
            raise ValueError(f"returned a {type(parts).__name__}" + (" without 'train'" if isinstance(parts, dict)
                                                                     else "")
                             + "; it must return a dict with train (and optionally val, test, classes)")
        unknown = sorted(set(parts) - {"train", "val", "test", "classes"})
        if unknown:
            raise ValueError(f"returned an unknown part {unknown[0]!r}; the parts are train, val, test, classes")
        splits = {k: labelled_from(parts[k], f"its {k} part") if parts.get(k) is not None else None
                  for k in ("train", "val", "test")}
        empty = [k for k, part in splits.items() if part is not None and len(part) == 0]
        if empty:
            raise ValueError(f"its {empty[0]} part holds no images")
    except DataError:
        raise
    except ValueError as err:  # what it returned, judged: one line naming it
        raise DataError(f"{path}: {' '.join(str(err).split())}", "data.name") from None
    except Exception as err:  # noqa: BLE001 - a Dataset of the user's that raises while its items are read
        raise DataError(f"{path}: reading what it returned raised {error_line(err)}", "data.name") from None
    lowest = min(int(s.labels.min()) for s in splits.values() if s is not None)
    if lowest < 0:
        raise DataError(f"{path}: labels must be class indices 0, 1, ..., got {lowest}", "data.name")
    count = int(max(int(s.labels.max()) for s in splits.values() if s is not None)) + 1
    classes = parts.get("classes")
    names = tuple(str(c) for c in classes) if classes is not None else tuple(map(str, range(count)))
    if len(names) < count:
        raise DataError(f"{path}: {len(names)} class names for labels up to {count - 1}", "data.name")
    return DataSource(splits["train"], names, test=splits["test"], val=splits["val"])
