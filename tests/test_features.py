"""Training features on real digits: each still learns, and does what it says."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from hpo.data.splits import load_splits
from hpo.data.transforms import Augmentation
from hpo.train.device import seed_everything
from hpo.train.hyperparams import Hyperparams
from hpo.train.trainer import Setup, fit, head_of
from hpo.models import create_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def splits():
    return load_splits("digits", {}, 0.2, 0.2, 0)


def run(splits, epochs=3, **changes):
    seed_everything(0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8), width=8)
    hp = Hyperparams(lr=3e-3, **changes)
    results = list(fit(model, splits.train, hp, epochs, Setup(CPU, splits.mean, splits.std, 0), val=splits.val))
    return model, results


@pytest.mark.parametrize("changes", [
    {"warmup_epochs": 1, "scheduler": "cosine"}, {"warmup_epochs": 1, "scheduler": "onecycle"},
    {"grad_clip": 0.5}, {"accumulation": 3}, {"swa_start": 2, "swa_lr": 1e-3}, {"ema_decay": 0.9},
    {"crop_padding": 1, "hflip": 0.5}, {"rrc_scale_min": 0.5, "rotation": 10.0}, {"jitter": 0.4},
    {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "erasing": 0.25, "label_smoothing": 0.1},
])
def test_feature_still_learns(splits, changes):
    _, results = run(splits, **changes)
    assert all(math.isfinite(r.train_loss) for r in results)
    assert results[-1].val_accuracy > 0.5, results[-1]  # chance is 0.1
    assert results[-1].val_top5 >= results[-1].val_accuracy


def test_head_phase_trains_only_the_head(splits):
    seed_everything(0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8), width=8)
    body = [p.detach().clone() for p in model[0].parameters()]
    head = head_of(model).weight.detach().clone()
    steps = fit(model, splits.train, Hyperparams(head_epochs=1, head_lr=1e-2), 2, Setup(CPU, splits.mean, splits.std,
                0), val=splits.val)
    next(steps)  # after the head-only epoch
    assert all(torch.equal(a, b) for a, b in zip(body, model[0].parameters()))
    assert not torch.equal(head, head_of(model).weight)
    next(steps)  # after a full epoch
    assert not all(torch.equal(a, b) for a, b in zip(body, model[0].parameters()))


def weights_after_every_step(model):
    """Start recording ``model``'s floating-point state after every optimizer step; ``stop()`` ends it."""
    recorded = []

    def snapshot(optimizer, args, kwargs):
        recorded.append({name: t.detach().clone() for name, t in model.state_dict().items() if t.is_floating_point()})

    handle = register_optimizer_step_post_hook(snapshot)
    return recorded, handle.remove


def test_swa_ends_with_the_mean_of_the_epoch_end_weights_from_swa_start(splits):
    seed_everything(0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8), width=8)
    after_step, stop = weights_after_every_step(model)
    end_of_epoch = []
    try:
        for _ in fit(model, splits.train, Hyperparams(lr=3e-3, swa_start=2, swa_lr=1e-3), 4, Setup(CPU, splits.mean,
                     splits.std, 0)):
            end_of_epoch.append(after_step[-1])  # raw: at the last yield the model holds the average
    finally:
        stop()
    averaged = end_of_epoch[1:]  # epochs 2, 3 and 4
    for name, weight in model.named_parameters():  # BatchNorm's statistics are recomputed, not averaged
        expected = torch.stack([snapshot[name] for snapshot in averaged]).mean(dim=0)
        assert torch.allclose(weight, expected, rtol=1e-5, atol=1e-6), name
        assert not torch.allclose(weight, end_of_epoch[-1][name], rtol=1e-3, atol=1e-5), name
        assert not torch.allclose(weight, torch.stack([s[name] for s in end_of_epoch]).mean(dim=0),
                                  rtol=1e-3, atol=1e-5), f"{name}: epoch 1 must not be in the average"


def test_ema_ends_with_the_moving_average_of_every_step(splits):
    decay = 0.9
    seed_everything(0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8), width=8)
    after_step, stop = weights_after_every_step(model)
    try:
        list(fit(model, splits.train, Hyperparams(lr=3e-3, ema_decay=decay), 2, Setup(CPU, splits.mean, splits.std,
                 0)))
    finally:
        stop()
    average = dict(after_step[0])  # the first update copies the weights
    for weights in after_step[1:]:
        average = {name: decay * average[name] + (1 - decay) * weights[name] for name in average}
    final = {name: t for name, t in model.state_dict().items() if t.is_floating_point()}
    assert final.keys() == average.keys() and len(after_step) == 2 * (len(splits.train) // 64)
    for name, value in final.items():  # parameters and BatchNorm statistics alike (use_buffers=True)
        assert torch.allclose(value, average[name], rtol=1e-4, atol=1e-6), name
        assert not torch.allclose(value, after_step[-1][name], rtol=1e-3, atol=1e-5), name


def test_accumulation_takes_fewer_optimizer_steps(splits):
    _, plain = run(splits, epochs=1, scheduler="cosine")
    _, accumulated = run(splits, epochs=1, scheduler="cosine", accumulation=4)
    assert plain[-1].lr == pytest.approx(0.0, abs=1e-9) and accumulated[-1].lr == pytest.approx(0.0, abs=1e-9)


def test_crop_with_padding_shifts_whole_pixels():
    x = torch.rand(16, 3, 8, 8)
    out = Augmentation(crop_padding=2)(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):
        assert any(torch.allclose(out[i], padded[i, :, 2 + dy:10 + dy, 2 + dx:10 + dx], atol=1e-6)
                   for dy in range(-2, 3) for dx in range(-2, 3))
    flipped = Augmentation(hflip=1.0)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(flipped, x.flip(-1), atol=1e-6)


def test_compiled_training_matches_eager(splits):
    """torch.compile (study field ``compile``) changes speed, not results."""
    def train(mode):
        seed_everything(0)
        model = create_model("mlp", num_classes=10, in_channels=1, image_size=(8, 8), hidden=32, depth=1)
        return list(fit(model, splits.train, Hyperparams(lr=3e-3), 1, Setup(CPU, splits.mean, splits.std, 0,
                        compile_mode=mode), val=splits.val))[-1]
    eager, compiled = train("off"), train("default")
    assert compiled.val_accuracy == pytest.approx(eager.val_accuracy, abs=0.01)
    assert compiled.train_loss == pytest.approx(eager.train_loss, rel=1e-3)
