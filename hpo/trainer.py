"""The training loop, read top to bottom.

``fit`` trains a model for a number of epochs and yields an
:class:`EpochResult` after each one; the caller decides what to do with it
(report to Optuna, log to MLflow, stop when pruned: breaking out of the loop
is how training stops). The trainer knows nothing of Optuna or MLflow.

Data stays on the device as uint8; each batch is converted, jittered and
normalised there. Losses accumulate on the device and are read once per
epoch, so the step never waits for the host.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from data.batches import steps_per_epoch, training_batches
from data.images import LabelledImages
from data.transforms import color_jitter, normalize, to_float
from hpo.optim import OPTIMIZERS, SCHEDULERS
from hpo.space import Hyperparams

EVAL_BATCH_SIZE = 1024


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's images
    lr: float  # at the end of the epoch
    epoch_time_s: float  # training and validation
    val_loss: float | None = None
    val_accuracy: float | None = None


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    n_images: int


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from hpo.errors import UserError
        raise UserError(f"device {name!r} was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices): model init and everything else becomes repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); full fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fit(model: nn.Module, train: LabelledImages, hp: Hyperparams, epochs: int, *,
        mean: Sequence[float], std: Sequence[float], device: torch.device, seed: int,
        val: LabelledImages | None = None) -> Iterator[EpochResult]:
    model.to(device)
    train = train.to(device)
    val = val.to(device) if val is not None else None
    generator = torch.Generator(device=device).manual_seed(seed)  # shuffling and augmentation

    optimizer = OPTIMIZERS.get(hp.optimizer)(model.parameters(), hp)
    total_steps = epochs * steps_per_epoch(len(train), hp.batch_size)
    scheduler = SCHEDULERS.get(hp.scheduler)(optimizer, hp, total_steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)

    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for images, labels in training_batches(train, hp.batch_size, generator):
            x = normalize(color_jitter(to_float(images), hp.jitter, generator), mean, std)
            with autocast(device):
                loss = loss_fn(model(x), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach().float() * len(labels)
            seen += len(labels)

        train_loss = (loss_sum / seen).item()  # the epoch's one host sync
        scores = evaluate(model, val, mean=mean, std=std, device=device) if val is not None else None
        yield EpochResult(
            epoch=epoch, train_loss=train_loss, lr=optimizer.param_groups[0]["lr"],
            epoch_time_s=time.perf_counter() - started,
            val_loss=scores.loss if scores else None, val_accuracy=scores.accuracy if scores else None)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, mean: Sequence[float], std: Sequence[float],
            device: torch.device) -> torch.Tensor:
    """Logits (float32, on ``device``) for uint8 images, in evaluation batches."""
    model.to(device).eval()
    outputs = []
    for start in range(0, len(images), EVAL_BATCH_SIZE):
        x = normalize(to_float(images[start:start + EVAL_BATCH_SIZE].to(device)), mean, std)
        with autocast(device):
            outputs.append(model(x).float())
    return torch.cat(outputs)


@torch.no_grad()
def evaluate(model: nn.Module, part: LabelledImages, *, mean: Sequence[float], std: Sequence[float],
             device: torch.device) -> Evaluation:
    logits = predict(model, part.images, mean=mean, std=std, device=device)
    labels = part.labels.to(device)
    loss = nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    return Evaluation(loss=loss, accuracy=accuracy, n_images=len(part))
