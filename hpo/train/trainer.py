"""The training loop, read top to bottom.

``fit`` trains a model for a number of epochs and yields an
:class:`EpochResult` after each one; the caller decides what to do with it
(report to Optuna, log to MLflow, stop when pruned: breaking out of the loop
is how training stops). The trainer knows nothing of Optuna or MLflow.

Data stays on the device as uint8 (or, for folders too large for memory,
streams from disk through DataLoader workers: ``data/streaming.py``); each
batch is converted, augmented and normalised on the device. Losses
accumulate on the device and are read once per epoch, so the step never
waits for the host. One batch's forward and backward (``forward_backward``)
is also the step of the LR range test (``hpo/train/lr_find.py``).

A batch that does not fit in the device's memory ends ``fit``, ``evaluate``
and ``forward_backward`` with :class:`hpo.core.errors.OutOfMemory`
(``hpo/train/device.py``: ``out_of_memory``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
import torch.nn as nn
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, update_bn

from hpo.data.batches import EVAL_BATCH_SIZE, evaluation_batches, steps_per_epoch, training_batches
from hpo.data.mixing import Mixing
from hpo.data.policies import Policy
from hpo.data.transforms import Augmentation, normalize, to_float
from hpo.core.errors import OutOfMemory
from hpo.train.device import Acceleration, out_of_memory, release_memory
from hpo.train.hyperparams import Hyperparams
from hpo.train.optim import OPTIMIZERS, SCHEDULERS


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's images
    lr: float  # at the end of the epoch
    epoch_time_s: float  # training and validation
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_top5: float | None = None
    val_f1_macro: float | None = None
    val_balanced_accuracy: float | None = None


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    n_images: int
    top5: float | None = None  # with more than 5 classes
    f1_macro: float | None = None  # scikit-learn's f1_score(average="macro") and balanced_accuracy_score
    balanced_accuracy: float | None = None

    def scores(self, prefix: str) -> dict[str, float]:
        """The scores by their metric names (``val_accuracy``, ``test_f1_macro``...), those it has."""
        named = {"accuracy": self.accuracy, "loss": self.loss, "top5": self.top5, "f1_macro": self.f1_macro,
                 "balanced_accuracy": self.balanced_accuracy}
        return {f"{prefix}_{name}": value for name, value in named.items() if value is not None}


@dataclass(frozen=True)
class Setup:
    """What a training run is given besides the model, the data and the hyperparameters."""

    device: torch.device
    mean: tuple[float, ...]  # per channel, on the 0..1 scale: images are normalised as (x / 255 - mean) / std
    std: tuple[float, ...]
    seed: int = 0  # shuffling and augmentation (the model's initial weights are the caller's: seed_everything)
    acceleration: Acceleration | None = None  # bf16, channels_last, fused optimizers; None: the device's default
    compile_mode: str = "off"  # torch.compile mode of the training forward pass

    @property
    def speedups(self) -> Acceleration:
        return self.acceleration or Acceleration.for_device(self.device)


def head_of(model: nn.Module) -> nn.Module:
    """The classifier head: the model's last ``nn.Linear`` (``fc`` of a torchvision ResNet)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear head to fine-tune first")
    return linears[-1]


def set_trainable(model: nn.Module, head_only: bool) -> list[nn.Parameter]:
    head = set(head_of(model).parameters()) if head_only else None
    for p in model.parameters():
        p.requires_grad_(head is None or p in head)
    return [p for p in model.parameters() if p.requires_grad]


def augmentation_of(hp: Hyperparams) -> Augmentation:
    """The per-image augmentation of training batches that ``hp`` asks for (data/transforms.py)."""
    return Augmentation(hp.crop_padding, hp.rrc_scale_min, hp.rrc_ratio_max, hp.hflip, hp.rotation, hp.jitter,
                        Policy(hp.augment, hp.randaugment_ops, hp.randaugment_magnitude), hp.erasing, hp.erasing_scale)


def build_schedule(optimizer, hp: Hyperparams, total_steps: int, warmup_steps: int):
    """The study's schedule over ``total_steps``, after a linear warm-up of ``warmup_steps``."""
    if warmup_steps <= 0 or warmup_steps >= total_steps:
        return SCHEDULERS.get(hp.scheduler)(optimizer, hp, total_steps)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-3, end_factor=1.0, total_iters=warmup_steps)
    main = SCHEDULERS.get(hp.scheduler)(optimizer, hp, total_steps - warmup_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])


def fit(model: nn.Module, train, hp: Hyperparams, epochs: int, setup: Setup, *, val=None,
        resume: Mapping[str, Any] | None = None, keep_state: Callable[[dict], None] | None = None,
        on_step: Callable[[int, int, int], None] | None = None) -> Iterator[EpochResult]:
    """Train ``model`` in place for ``epochs``, yielding after each (with the validation scores when ``val``
    is given); ``model`` ends with the final weights (the SWA or EMA average when those are on).

    ``keep_state`` is handed the training state after every epoch (weights, optimizer, schedule, EMA and
    SWA averages, random number generators: plain tensors and numbers, for ``torch.save``). Given such
    a state as ``resume``, ``fit`` goes on from the next epoch exactly as if it had never stopped (on a
    CPU, to the bit: tests/test_resume.py).

    ``on_step(epoch, step, steps)`` is called after each optimizer step (both 1-based; ``steps`` per epoch),
    for a progress bar; it reads nothing from the device, so the step still does not wait for the host.

    Example, on the digits bundled with scikit-learn (val accuracy 0.98 after 3 epochs)::

        from hpo.data.splits import load_splits
        from hpo.train.hyperparams import Hyperparams
        from hpo.train.device import seed_everything
        from hpo.train.trainer import Setup, fit
        from hpo.models import create_model

        splits = load_splits("digits", {}, val_fraction=0.2, test_fraction=0.2, split_seed=0)
        seed_everything(0)  # the model's initial weights
        model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8))
        setup = Setup(torch.device("cpu"), splits.mean, splits.std, seed=0)
        for result in fit(model, splits.train, Hyperparams(lr=3e-3), 3, setup, val=splits.val):
            print(result.epoch, result.val_accuracy)

    A batch that does not fit in memory raises :class:`hpo.core.errors.OutOfMemory` ("out of memory at batch size
    N on DEVICE, ...") once the memory the training held (the batch, its activations, the gradients, the
    optimizer's state, the EMA and SWA copies) is released; ``model`` keeps the weights it had.
    """
    try:
        yield from _train(model, train, hp, epochs, setup, val, resume, keep_state, on_step)
        return
    except OutOfMemory as err:  # a training step's (forward_backward) or an evaluation's (evaluate)
        failure = err.with_traceback(None)
    except RuntimeError as err:  # e.g. the optimizer's state, allocated at its first step
        failure = out_of_memory(err, min(hp.batch_size, len(train)), setup.device)
        if failure is None:
            raise
    # Out of the except block, the caught error's traceback is gone, and with it _train's frame: the batch,
    # the optimizer and its state, the EMA and SWA copies. The gradients live on the model.
    model.zero_grad(set_to_none=True)
    release_memory(setup.device)
    raise failure


def _train(model: nn.Module, train, hp: Hyperparams, epochs: int, setup: Setup, val,
           resume: Mapping[str, Any] | None, keep_state: Callable[[dict], None] | None,
           on_step: Callable[[int, int, int], None] | None) -> Iterator[EpochResult]:
    """``fit``'s loop."""
    device, acceleration = setup.device, setup.speedups
    model.to(device, memory_format=acceleration.memory_format)
    if resume is not None:
        model.load_state_dict(resume["model"])
    forward = model if setup.compile_mode == "off" else torch.compile(model, mode=setup.compile_mode)
    train = train.to(device)
    val = val.to(device) if val is not None else None
    generator = torch.Generator(device=device).manual_seed(setup.seed)  # shuffling and augmentation
    augment = augmentation_of(hp)
    mixing = Mixing(hp.mixup_alpha, hp.cutmix_alpha, hp.mix_prob, hp.cutmix_prob, seed=setup.seed)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)
    steps = max(1, steps_per_epoch(len(train), hp.batch_size) // hp.accumulation)  # optimizer steps per epoch
    head_epochs = min(hp.head_epochs, epochs)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(hp.ema_decay), use_buffers=True)
           if hp.ema_decay > 0 else None)
    swa = AveragedModel(model) if 0 < hp.swa_start <= epochs else None
    start = 1
    if resume is not None:
        start = resume["epoch"] + 1
        for average, key in ((ema, "ema"), (swa, "swa")):
            if average is not None:
                average.load_state_dict(resume[key])
        generator.set_state(resume["generator"])
        if resume.get("mixing") is not None:
            mixing.restore(resume["mixing"])
        torch.set_rng_state(resume["torch_rng"])  # dropout draws from it
        if device.type == "cuda":
            torch.cuda.set_rng_state(resume["cuda_rng"], device)

    for epoch in range(start, epochs + 1):
        started = time.perf_counter()
        # Two-phase fine-tuning: the head alone at head_lr first, then every layer at lr, each phase
        # with its own optimizer and schedule. Resuming, they are built as they stood, then given their state.
        resuming = epoch == start and resume is not None
        if epoch == start or epoch == head_epochs + 1:
            head_only = epoch <= head_epochs
            params = set_trainable(model, head_only)
            phase_hp = dataclasses.replace(hp, lr=hp.head_lr) if head_only else hp
            phase_epochs = head_epochs if head_only else epochs - head_epochs
            optimizer = OPTIMIZERS.get(phase_hp.optimizer)(params, phase_hp, fused=acceleration.fused)
            scheduler = build_schedule(optimizer, phase_hp, phase_epochs * steps, hp.warmup_epochs * steps)
            phase_start = 1 if head_only else head_epochs + 1
            if swa is not None and resuming and phase_start <= hp.swa_start < epoch:
                scheduler = SWALR(optimizer, swa_lr=hp.swa_lr, anneal_epochs=steps)
            if resuming and epoch != phase_start:  # inside a phase: its optimizer and schedule go on
                optimizer.load_state_dict(resume["optimizer"])
                scheduler.load_state_dict(resume["scheduler"])
        if swa is not None and epoch == hp.swa_start:  # SWA: anneal to a constant swa_lr over one epoch
            scheduler = SWALR(optimizer, swa_lr=hp.swa_lr, anneal_epochs=steps)

        model.train()
        loss_sum = torch.zeros((), device=device)
        seen = 0
        batches = training_batches(train, hp.batch_size, generator, limit=steps * hp.accumulation)
        for batch_index, (images, labels) in enumerate(batches, start=1):
            loss = forward_backward(forward, images, labels, generator, augment=augment, loss_fn=loss_fn,
                                    setup=setup, accumulation=hp.accumulation, mixing=mixing)
            loss_sum += loss.float() * len(labels)
            seen += len(labels)
            if batch_index % hp.accumulation:
                continue  # gradients of several batches add up to one step
            if hp.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, hp.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            if on_step is not None:
                on_step(epoch, batch_index // hp.accumulation, steps)

        if swa is not None and epoch >= hp.swa_start:
            swa.update_parameters(model)
        if epoch == epochs and swa is not None:  # the averaged weights need BatchNorm statistics of their own
            update_bn(normalized_batches(train, setup), swa, device=device)
            model.load_state_dict(swa.module.state_dict())
        if epoch == epochs and ema is not None:
            model.load_state_dict(ema.module.state_dict())

        train_loss = (loss_sum / seen).item()  # the epoch's one host sync
        scored = ema.module if ema is not None else model
        scores = evaluate(scored, val, setup) if val is not None else None
        if keep_state is not None:
            keep_state({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema else None,
                        "swa": swa.state_dict() if swa else None, "generator": generator.get_state(),
                        "mixing": mixing.state() if mixing.on else None,
                        "torch_rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None})
        yield EpochResult(
            epoch=epoch, train_loss=train_loss, lr=optimizer.param_groups[0]["lr"],
            epoch_time_s=time.perf_counter() - started,
            val_loss=scores.loss if scores else None, val_accuracy=scores.accuracy if scores else None,
            val_top5=scores.top5 if scores else None, val_f1_macro=scores.f1_macro if scores else None,
            val_balanced_accuracy=scores.balanced_accuracy if scores else None)


def forward_backward(forward: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, *,
                     augment: Augmentation, loss_fn: nn.Module, setup: Setup, accumulation: int = 1,
                     mixing: Mixing | None = None) -> torch.Tensor:
    """One training batch up to the optimizer step (the caller's): augment, normalise, erase, mix, forward,
    backward. A mixed batch's loss is the same blend of its two labels' losses (data/mixing.py).

    The batch's gradient, divided by ``accumulation``, adds to each parameter's ``.grad``. Returns its mean
    loss, detached and still on the device: reading it here would make every step wait for the host. A batch
    that does not fit raises :class:`hpo.core.errors.OutOfMemory` (``hpo/train/device.py``).
    """
    acceleration = setup.speedups
    try:
        x = augment.erase(normalize(augment(to_float(images), generator), setup.mean, setup.std), generator)
        mixed = mixing(x, labels) if mixing is not None else None
        x = (mixed.images if mixed is not None else x).contiguous(memory_format=acceleration.memory_format)
        with acceleration.autocast(images.device):
            logits = forward(x)
            loss = loss_fn(logits, labels) if mixed is None else \
                mixed.lam * loss_fn(logits, labels) + (1.0 - mixed.lam) * loss_fn(logits, mixed.partners)
        (loss / accumulation).backward()
        return loss.detach()
    except RuntimeError as err:
        failure = out_of_memory(err, len(images), images.device)
        if failure is None:
            raise
    x = loss = logits = mixed = None  # the batch and the graph of its activations
    release_memory(images.device)
    raise failure


def normalized_batches(part, setup: Setup) -> Iterator[torch.Tensor]:
    for images, _ in evaluation_batches(part):
        yield normalize(to_float(images), setup.mean, setup.std)


@torch.no_grad()
def logits_of(model: nn.Module, batches: Iterable[torch.Tensor], setup: Setup) -> torch.Tensor:
    """Logits (float32, on the setup's device) for batches of uint8 images."""
    device, acceleration = setup.device, setup.speedups
    model.to(device, memory_format=acceleration.memory_format).eval()
    outputs = []
    for images in batches:
        x = normalize(to_float(images.to(device)), setup.mean, setup.std).contiguous(
            memory_format=acceleration.memory_format)
        with acceleration.autocast(device):
            outputs.append(model(x).float())
    return torch.cat(outputs)


def predict(model: nn.Module, images: torch.Tensor, setup: Setup) -> torch.Tensor:
    """Logits (float32, on the setup's device) for a tensor of uint8 images, in evaluation batches."""
    return logits_of(model, images.split(EVAL_BATCH_SIZE), setup)


def evaluate(model: nn.Module, part, setup: Setup) -> Evaluation:
    """Loss, accuracy and top-5 of ``model`` on ``part``, ``EVAL_BATCH_SIZE`` images at a time. A batch that
    does not fit raises :class:`hpo.core.errors.OutOfMemory` (``hpo/train/device.py``)."""
    try:
        return _evaluate(model, part, setup)
    except RuntimeError as err:
        failure = out_of_memory(err, min(EVAL_BATCH_SIZE, len(part)), setup.device,
                                hint=f"evaluating {len(part)} images, {EVAL_BATCH_SIZE} at a time "
                                     f"(data/batches.py: EVAL_BATCH_SIZE)")
        if failure is None:
            raise
    release_memory(setup.device)  # the logits and the batch went with _evaluate's frame, in the caught traceback
    raise failure


@torch.no_grad()
def _evaluate(model: nn.Module, part, setup: Setup) -> Evaluation:
    device, labels = setup.device, []

    def images():
        for batch_images, batch_labels in evaluation_batches(part.to(device)):
            labels.append(batch_labels)
            yield batch_images

    logits = logits_of(model, images(), setup)
    labels = torch.cat(labels).to(device)
    loss = nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    top5 = None
    if logits.shape[1] > 5:
        top5 = (logits.topk(5, dim=1).indices == labels[:, None]).any(dim=1).float().mean().item()
    f1_macro, balanced = class_balanced_scores(logits.argmax(dim=1), labels, logits.shape[1])
    return Evaluation(loss=loss, accuracy=accuracy, n_images=len(part), top5=top5, f1_macro=f1_macro,
                      balanced_accuracy=balanced)


def class_balanced_scores(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[float, float]:
    """Macro F1 and balanced accuracy from one confusion matrix on the device, as scikit-learn defines them:
    F1 averaged over the classes that occur in the labels or the predictions (a class predicted but never
    true scores 0), recall averaged over the classes that occur in the labels."""
    confusion = torch.bincount(labels * num_classes + predicted, minlength=num_classes ** 2).view(
        num_classes, num_classes).double()
    hits, true, guessed = confusion.diagonal(), confusion.sum(dim=1), confusion.sum(dim=0)
    present = (true + guessed) > 0
    f1 = (2 * hits / (true + guessed).clamp_min(1))[present].mean()
    recall = (hits / true.clamp_min(1))[true > 0].mean()
    return f1.item(), recall.item()
