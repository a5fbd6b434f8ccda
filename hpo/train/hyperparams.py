"""The hyperparameters of one training run, in one block with their units.

This is the trainer's input: ``hpo/train/trainer.py: fit`` reads nothing else to
decide how to train. A study searches or fixes each field (``hpo/spec/space.py``
holds their allowed values and when each applies); the defaults are what a
study gets for a field it does not name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hyperparams:
    """Everything a trial's training depends on that a study may search (docs/study-files.md: the hyperparameters)."""

    # Optimisation
    lr: float = 1e-3  # learning rate (the peak for onecycle; where step and cosine start)
    batch_size: int = 64  # images per forward pass; an epoch drops its last partial batch
    optimizer: str = "adam"  # hpo/train/optim.py: OPTIMIZERS (adam, adamw, sgd, rmsprop)
    momentum: float = 0.9  # for sgd and rmsprop only
    weight_decay: float = 0.0  # L2 penalty coefficient (decoupled from the gradient for adamw)
    scheduler: str = "none"  # hpo/train/optim.py: SCHEDULERS; stepped once per optimizer step
    warmup_epochs: int = 0  # epochs of linear warm-up from lr/1000 before the schedule
    label_smoothing: float = 0.0  # probability mass spread evenly over all classes in the loss target
    grad_clip: float = 0.0  # max L2 norm of all gradients together; 0 = off
    accumulation: int = 1  # batches whose gradients add up to one optimizer step
    # Weight averaging and fine-tuning
    swa_start: int = 0  # 1-based epoch from which SWA averages the end-of-epoch weights; 0 = off
    swa_lr: float = 1e-4  # constant learning rate during SWA, reached over one epoch
    ema_decay: float = 0.0  # weight of the old average in the per-step EMA of the weights; 0 = off
    head_epochs: int = 0  # epochs training only the head (the last nn.Linear) first; counted in the epochs
    head_lr: float = 1e-3  # learning rate of that head-only phase
    # Augmentation of training batches (data/transforms.py: Augmentation)
    crop_padding: int = 0  # pixels of zero padding around a random crop of the original size; 0 = off
    rrc_scale_min: float = 1.0  # RandomResizedCrop's smallest area, as a fraction of the image; 1 = off
    rrc_ratio_max: float = 4 / 3  # RandomResizedCrop's widest aspect ratio r, drawn from [1/r, r]
    hflip: float = 0.0  # probability of a horizontal flip
    rotation: float = 0.0  # degrees; each image turns by a uniform draw from [-rotation, rotation]
    jitter: float = 0.0  # colour-jitter strength s: brightness, contrast, saturation 0.4 s, hue 0.1 s turns
    augment: str = "none"  # data/policies.py: POLICIES (none, trivialaugment, randaugment), a draw per image
    randaugment_ops: int = 2  # RandAugment: operations per image, one after the other
    randaugment_magnitude: int = 9  # RandAugment: the magnitude bin of every operation, 0..30
    erasing: float = 0.0  # RandomErasing: probability that an image gets a rectangle of the mean colour; 0 = off
    erasing_scale: float = 0.33  # RandomErasing: the largest rectangle, as a fraction of the area (smallest 0.02)
    # Mixing of training batches (data/mixing.py: Mixing)
    mixup_alpha: float = 0.0  # MixUp: blend weight ~ Beta(alpha, alpha), one per batch; 0 = off
    cutmix_alpha: float = 0.0  # CutMix: the image's uncovered share ~ Beta(alpha, alpha), one per batch; 0 = off
    mix_prob: float = 1.0  # probability that a batch is mixed at all (with MixUp or CutMix on)
    cutmix_prob: float = 0.5  # with both on: probability that a mixed batch gets CutMix rather than MixUp

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
