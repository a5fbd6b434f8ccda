"""The learning-rate range test (Smith, 2017; write-up 001's "LR finder").

Train the study's model on its training split while the lr grows
exponentially from ``start_lr`` to ``end_lr``, one value per step; record the
smoothed loss; stop once it exceeds ``divergence`` times its minimum. The
suggestion is the lr where the smoothed loss falls fastest (per decade of lr)
before its minimum, a common and conservative reading of the curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from hpo.data.batches import training_batches
from hpo.train.device import seed_everything
from hpo.train.hyperparams import Hyperparams
from hpo.train.optim import OPTIMIZERS
from hpo.train.trainer import Setup, augmentation_of, forward_backward

SMOOTHING = 0.98  # exponential moving average of the loss, bias-corrected


@dataclass(frozen=True)
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed
    suggested_lr: float
    min_loss_lr: float


def lr_range_test(model: nn.Module, train, hp: Hyperparams, setup: Setup, *, start_lr: float = 1e-7,
                  end_lr: float = 10.0, steps: int = 100, divergence: float = 4.0) -> LRFindResult:
    """Each step is the trainer's (``hpo/train/trainer.py: forward_backward``) with the study's augmentation, loss
    and speed-ups (``setup``), so the curve describes the training the study will run."""
    seed_everything(setup.seed)
    device, acceleration = setup.device, setup.speedups
    model.to(device, memory_format=acceleration.memory_format).train()
    train = train.to(device)
    generator = torch.Generator(device=device).manual_seed(setup.seed)
    augment = augmentation_of(hp)
    optimizer = OPTIMIZERS.get(hp.optimizer)(model.parameters(), hp, fused=acceleration.fused)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)
    growth = (end_lr / start_lr) ** (1 / max(1, steps - 1))

    def batches():
        while True:  # as many epochs as the steps need
            yield from training_batches(train, hp.batch_size, generator)

    lrs, losses, average, best = [], [], 0.0, math.inf
    for step, (images, labels) in zip(range(steps), batches()):
        lr = start_lr * growth ** step
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss = forward_backward(model, images, labels, generator, augment=augment, loss_fn=loss_fn, setup=setup)
        optimizer.step()
        value = loss.item()  # the test needs every step's loss on the host
        average = SMOOTHING * average + (1 - SMOOTHING) * value
        smoothed = average / (1 - SMOOTHING ** (step + 1))
        if not math.isfinite(smoothed) or smoothed > divergence * best:
            break
        best = min(best, smoothed)
        lrs.append(lr)
        losses.append(smoothed)
    return LRFindResult(lrs, losses, suggest(lrs, losses), lrs[losses.index(min(losses))] if losses else start_lr)


def suggest(lrs: list[float], losses: list[float]) -> float:
    """The lr of the steepest fall of the loss per decade, before the minimum."""
    end = losses.index(min(losses)) if losses else 0
    if end < 2:
        return lrs[end] if lrs else float("nan")
    slopes = [(losses[i + 1] - losses[i]) / math.log10(lrs[i + 1] / lrs[i]) for i in range(end)]
    return lrs[slopes.index(min(slopes))]


def save_plot(result: LRFindResult, path: str | Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(result.lrs, result.losses)
    axes.axvline(result.suggested_lr, color="tab:red", linestyle="--",
                 label=f"suggested lr {result.suggested_lr:.2e}")
    axes.set(xscale="log", xlabel="learning rate", ylabel="training loss (smoothed)", title=title)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
