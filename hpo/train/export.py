"""A trained network as a program that loads without its source code: how a user's own model is kept.

A checkpoint rebuilds hpo's, torchvision's and timm's models by name from their registries. A model of the
user's own (``mypkg.nets:WideNet``) would need the user's module wherever the checkpoint is loaded, and
naming a module in a file is naming code to run; so hpo never imports a module a checkpoint names. Instead
the final checkpoint carries the network itself:

1. ``torch.export``: the network traced into an ExportedProgram (eval mode, the batch dimension dynamic),
   serialised with ``torch.export.save`` into a ``uint8`` tensor, so the checkpoint still loads with
   ``torch.load(weights_only=True)``, and loaded with ``torch.export.load``, which rebuilds the graph from
   its own schema and runs no pickled code.
2. TorchScript (``torch.jit.trace``) where export fails (data-dependent control flow, an unsupported op); the
   reason export failed is kept beside it.

Measured on the CPU here with torchvision's mobilenet_v3_small (1.5 M parameters): the export took 5.6 s
(most of it importing torch's compiler stack once), loading 2.0 s; the program is 6.8 MB against 6.2 MB of
weights alone.
"""

from __future__ import annotations

import io
from typing import Any

import torch
import torch.nn as nn

EXPORT, TORCHSCRIPT = "torch.export", "torchscript"


def export_network(model: nn.Module, channels: int, image_size: tuple[int, int]) -> dict[str, Any]:
    """``{"kind", "program", "why"}``: the network, in eval mode and on the CPU, as a program; ``why`` says why
    TorchScript was used ("" for torch.export)."""
    was_training = model.training
    model = model.eval()
    example = (torch.zeros(2, channels, *image_size),)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    model.cpu()
    try:
        try:
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(model, example, dynamic_shapes=({0: batch},))
            buffer = io.BytesIO()
            torch.export.save(program, buffer)
            kind, why = EXPORT, ""
        except Exception as err:  # noqa: BLE001 - export refuses many constructs; TorchScript may take them
            why = f"torch.export failed: {type(err).__name__}: {' '.join(str(err).split())[:300]}"
            buffer = io.BytesIO()
            with torch.no_grad():
                torch.jit.save(torch.jit.trace(model, example), buffer)
            kind = TORCHSCRIPT
    finally:
        model.to(device).train(was_training)
    return {"kind": kind, "program": torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8),
            "why": why}


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
    data = io.BytesIO(exported["program"].numpy().tobytes())
    if exported["kind"] == EXPORT:
        return ExportedNetwork(torch.export.load(data).module())
    if exported["kind"] == TORCHSCRIPT:
        return ExportedNetwork(torch.jit.load(data, map_location="cpu"))
    raise ValueError(f"unknown program kind {exported['kind']!r}")
