"""The device a training runs on: choosing it, its speed-ups, seeding, and what an allocation that fails becomes.

A batch that does not fit in the device's memory (CUDA's, or the CPU's
allocator refusing) becomes :class:`hpo.core.errors.OutOfMemory` ("out of
memory at batch size N on DEVICE"), raised only once the memory the failed
step held has been released, so the next trial of a search starts with it free.
"""

from __future__ import annotations

import contextlib
import gc
import random
import re
import traceback
from dataclasses import dataclass

import numpy as np
import torch

from hpo.core.errors import OutOfMemory, UserError

# How torch says an allocation failed. CUDA's caching allocator raises torch.OutOfMemoryError; the CPU's allocator
# raises a plain RuntimeError (torch 2.14.1: "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator:
# can't allocate memory: you tried to allocate 140737488355328 bytes. Error code 12 (Cannot allocate memory)"),
# and so do CUDA calls that bypass the caching allocator (cuBLAS's workspace, cudaMalloc in an extension).
OUT_OF_MEMORY_WORDS = ("DefaultCPUAllocator: can't allocate memory", "CUDA error: out of memory",
                       "CUBLAS_STATUS_ALLOC_FAILED")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device: {name!r} is not a device hpo trains on; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r} was asked for but torch sees {torch.cuda.device_count()} CUDA GPU(s), "
                        f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every batch of a trial has one shape: pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True  # for whatever runs outside bf16 autocast
        torch.backends.cudnn.allow_tf32 = True
    return device


def out_of_memory(err: BaseException, batch_size: int, device: torch.device,
                  hint: str = "try a smaller batch_size range") -> OutOfMemory | None:
    """``err`` as an :class:`OutOfMemory` naming the batch size and the device, or None when it is no failed
    allocation.

    Raise it only after leaving the ``except`` block that caught ``err``, and after :func:`release_memory`:
    raised inside, it would hold ``err`` as its ``__context__``, and with ``err`` its traceback and the
    frames that hold the batch's activations. Its note keeps that traceback as text, for the run's error.txt.
    """
    text = str(err)
    if not isinstance(err, torch.OutOfMemoryError) and not any(words in text for words in OUT_OF_MEMORY_WORDS):
        return None
    where = str(device)
    if device.type == "cuda":
        gpu = torch.cuda.get_device_properties(device)  # "cuda" alone: the current GPU
        where += f" ({gpu.name}, {gpu.total_memory / 2**30:.0f} GiB)"
    if asked := re.search(r"tried to allocate (\d+) bytes", text):  # the CPU allocator's words
        where += f", allocating {_in_binary_units(int(asked.group(1)))}"
    elif asked := re.search(r"Tried to allocate ([\d.]+ [KMGTP]?i?B)", text):  # CUDA's, in the same units
        where += f", allocating {asked.group(1)}"
    failure = OutOfMemory(f"out of memory at batch size {batch_size} on {where}; {hint}")
    failure.add_note("The allocation that failed:\n" + "".join(traceback.format_exception(err)).rstrip())
    return failure


def _in_binary_units(n_bytes: int) -> str:
    exponent = min(max(0, (n_bytes.bit_length() - 1) // 10), 5)
    return f"{n_bytes / 1024**exponent:.2f} {('bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB')[exponent]}"


def release_memory(device: torch.device) -> None:
    """Free what a failed step left behind: tensors that only reference cycles still hold, and on a GPU the
    caching allocator's free blocks, for other processes on the same GPU (``hpo run --trials-per-gpu``)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices): model init and everything else becomes repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Acceleration:
    """Speed-ups of the training step; what is learned changes only by rounding (bf16 the most: on digits
    within 0.01 of fp32's validation accuracy, tests/test_acceleration.py).

    Each is on by default on CUDA and off elsewhere; torch runs all three on a CPU too, which is how the
    tests check them on machines without a GPU.
    """

    bf16: bool  # autocast forward passes to bfloat16 (no loss scaling needed, unlike fp16)
    channels_last: bool  # NHWC weights and batches: cuDNN's tensor-core convolutions run without transposes
    fused: bool  # one fused optimizer kernel per step for all parameters (adam, adamw, sgd)

    @classmethod
    def for_device(cls, device: torch.device) -> Acceleration:
        on = device.type == "cuda"
        return cls(bf16=on, channels_last=on, fused=on)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
