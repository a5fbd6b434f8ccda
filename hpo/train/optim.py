"""Optimizers and learning-rate schedules, each a registry entry built from the trial's hyperparameters.

Every schedule is stepped once per optimizer step (not per epoch), so one
code path serves OneCycle, which must step per batch, and the rest.
"""

from __future__ import annotations

import math

from hpo.core.lazy import lazy
from hpo.core.registry import Registry

torch = lazy("torch")  # the study validator reads these registries without loading torch

OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")

# Only these read ``momentum``; for the others the search never samples it.
MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")


def fused_kwargs(fused: bool) -> dict:
    """One fused kernel per step for all parameters when ``fused`` (the trainer's ``Acceleration.fused``).

    Off means leaving ``fused`` unset, not ``fused=False``: an explicit False also switches off torch's
    default of a multi-tensor (foreach) kernel on GPUs.
    """
    return {"fused": True} if fused else {}


@OPTIMIZERS.register("adam")
def adam(params, hp, fused: bool = False) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay, **fused_kwargs(fused))


@OPTIMIZERS.register("adamw")
def adamw(params, hp, fused: bool = False) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, **fused_kwargs(fused))


@OPTIMIZERS.register("sgd")
def sgd(params, hp, fused: bool = False) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
                           **fused_kwargs(fused))


@OPTIMIZERS.register("rmsprop")
def rmsprop(params, hp, fused: bool = False) -> torch.optim.Optimizer:
    # alpha 0.99 and eps 1e-8 are torch's defaults and write-up 004's values. torch (2.14) has no fused RMSprop.
    return torch.optim.RMSprop(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)


@SCHEDULERS.register("none")
def constant(optimizer, hp, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


@SCHEDULERS.register("step")
def step(optimizer, hp, total_steps: int):
    """Divide the lr by 10 at 1/3 and 2/3 of training (the classic ResNet schedule, scaled to the budget)."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, math.ceil(total_steps / 3)), gamma=0.1)


@SCHEDULERS.register("cosine")
def cosine(optimizer, hp, total_steps: int):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))


@SCHEDULERS.register("onecycle")
def onecycle(optimizer, hp, total_steps: int):
    """``lr`` is the peak; warm-up over the first 30% of steps, then cosine down (torch's defaults)."""
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hp.lr, total_steps=max(2, total_steps))
