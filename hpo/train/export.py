"""A trained network as a program that loads without its source code: how a user's own model is kept.

A checkpoint rebuilds hpo's, torchvision's and timm's models by name from their registries. A model of the
user's own (``mypkg.nets:WideNet``) would need the user's module wherever the checkpoint is loaded, and
naming a module in a file is naming code to run; so hpo never imports a module a checkpoint names. Instead
the final checkpoint carries the network itself, traced by ``torch.export`` (eval mode, the batch dimension
dynamic) and serialised with ``torch.export.save`` into a ``uint8`` tensor, so the checkpoint still loads
with ``torch.load(weights_only=True)``.

``torch.export.load`` is not safe on a file from elsewhere: its archive may hold pickled tensors, pickled
objects and sample inputs (loaded with ``weights_only=False``), and its graph may call any ``torch.*``
function by name. So before loading, :func:`check_program` opens the archive and refuses anything but what
an exported network of standard layers holds: JSON graphs whose every call is an ATen operator (or
Python's ``operator``/``math``), raw tensor files described as unpickled, and sample inputs that load with
``weights_only=True``. A network ``torch.export`` cannot trace (data-dependent control flow, an unsupported
op) is refused when the data is loaded, before any trial, rather than after its retrain
(``hpo/search/context.py: load_data``).

Measured on the CPU here with torchvision's mobilenet_v3_small (1.5 M parameters): the export took 5.6 s
(most of it importing torch's compiler stack once), loading 2.0 s; the program is 6.8 MB.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import re
import zipfile
from typing import Any

import torch
import torch.nn as nn

EXPORT = "torch.export"
# What an archive of torch.export.save may hold here (torch/export/pt2_archive/constants.py names them).
ENTRIES = re.compile(r"^[^/]+/(models/[\w.-]+\.json|data/weights/(weight_\d+|model_weights_config\.json)"
                     r"|data/constants/(tensor_\d+|model_constants_config\.json)|data/sample_inputs/[\w.-]+\.pt"
                     r"|archive_format|archive_version|\.data/version|byteorder|\.data/serialization_id)\Z")
TORCH_LOGGERS = ("torch.fx.experimental.symbolic_shapes", "torch._dynamo", "torch.export", "torch._export",
                 "torch._subclasses")  # what torch.export logs while it traces, and when it gives up
CALLS = ("torch.ops.aten.", "_operator.", "math.")  # the graph's calls: ATen operators, Python's arithmetic


class UnsafeProgram(ValueError):
    """An exported program that holds more than an exported network of standard layers should."""


def export_network(model: nn.Module, channels: int, image_size: tuple[int, int]) -> dict[str, Any]:
    """``{"kind", "program"}``: the network, in eval mode and on the CPU, as an exported program. Raises
    ValueError (one line) where torch.export cannot trace it."""
    was_training = model.training
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    model.cpu().eval()
    importlib.import_module("torch._dynamo")  # it sets torch's log levels when imported: before ours, not after

    quiet = [logging.getLogger(name) for name in TORCH_LOGGERS]  # a refused trace is our one line, not theirs
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.CRITICAL)
    try:
        batch = torch.export.Dim("batch", min=1)
        with contextlib.redirect_stderr(io.StringIO()):  # a refused trace prints its graph there
            program = torch.export.export(model, (torch.zeros(2, channels, *image_size),),
                                          dynamic_shapes=({0: batch},))
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
    except Exception as err:  # noqa: BLE001 - export refuses many constructs, each with its own exception
        raise ValueError(f"torch.export cannot trace it ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:300]})") from None
    finally:
        model.to(device).train(was_training)
        for log, level in zip(quiet, levels):
            log.setLevel(level)
    data = buffer.getvalue()
    check_program(data)  # what is written is what a loader will accept
    return {"kind": EXPORT, "program": torch.frombuffer(bytearray(data), dtype=torch.uint8)}


def check_program(data: bytes) -> None:
    """Raise UnsafeProgram unless the archive holds only what :func:`load_network` may load safely."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except zipfile.BadZipFile:
        raise UnsafeProgram("the exported program is not a torch.export archive") from None
    strange = [n for n in names if not ENTRIES.match(n)]
    if strange:
        raise UnsafeProgram(f"the exported program holds {strange[0]!r}, which no exported network needs")
    for name in names:
        if name.endswith(("model_weights_config.json", "model_constants_config.json")):
            for key, entry in json.loads(archive.read(name)).get("config", {}).items():
                if entry.get("use_pickle") or not str(entry.get("path_name", "")).startswith(("weight_", "tensor_")):
                    raise UnsafeProgram(f"the exported program keeps {key!r} pickled")
        elif name.endswith(".json") and "/models/" in name:
            for target in _calls(json.loads(archive.read(name))):
                if not target.startswith(CALLS):
                    raise UnsafeProgram(f"the exported program calls {target!r}; an exported network calls ATen "
                                        f"operators only")
        elif name.endswith(".pt"):
            try:
                torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            except Exception:  # noqa: BLE001 - anything beyond tensors and containers
                raise UnsafeProgram(f"the exported program's {name.rsplit('/', 1)[-1]} holds more than tensors") \
                    from None


def _calls(document) -> list[str]:
    """Every ``target`` string in a serialised graph (the functions its nodes call)."""
    found, stack = [], [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "target" and isinstance(value, str):
                    found.append(value)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


class ExportedNetwork(nn.Module):
    """A loaded program behind an ``nn.Module`` (exported graphs refuse ``.eval()``; this one is always in
    eval mode, as it was exported)."""

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)

    def train(self, mode: bool = True) -> "ExportedNetwork":
        self.training = False  # the graph was exported in eval mode; it has no other
        return self


def load_network(exported: dict[str, Any]) -> nn.Module:
    if exported.get("kind") != EXPORT:
        raise UnsafeProgram(f"unknown program kind {exported.get('kind')!r} (hpo writes {EXPORT!r})")
    data = exported["program"].numpy().tobytes()
    check_program(data)
    return ExportedNetwork(torch.export.load(io.BytesIO(data)).module())
