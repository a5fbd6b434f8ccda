"""The LR range test on digits: it steps as the trainer does, one lr per step, and stops when the loss diverges."""

from __future__ import annotations

import math

import pytest
import torch

from hpo.data.splits import load_splits
from hpo.train.device import Acceleration, seed_everything
from hpo.train.hyperparams import Hyperparams
from hpo.train.lr_find import lr_range_test
from hpo.train.trainer import Setup, fit
from hpo.models import create_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def splits():
    return load_splits("digits", {}, val_fraction=0.2, test_fraction=0.2, split_seed=0)


def new_model(name="digits_cnn"):
    seed_everything(0)
    return create_model(name, num_classes=10, in_channels=1, image_size=(8, 8))


@pytest.mark.parametrize("acceleration", [None, Acceleration(bf16=True, channels_last=True, fused=True)])
def test_a_range_test_step_is_a_training_step(splits, acceleration):
    """On one batch, one step of the range test at lr x and one epoch of ``fit`` at lr x end with the same weights:
    same augmentation, loss (label smoothing), precision and optimizer."""
    one_batch = splits.train.subset(torch.arange(64))
    hp = Hyperparams(lr=0.01, optimizer="adamw", weight_decay=0.01, batch_size=64, label_smoothing=0.1,
                     crop_padding=1, jitter=0.5)
    trained, probed = new_model(), new_model()
    list(fit(trained, one_batch, hp, 1, Setup(CPU, splits.mean, splits.std, 3, acceleration=acceleration)))
    lr_range_test(probed, one_batch, hp, Setup(CPU, splits.mean, splits.std, 3, acceleration=acceleration),
                  start_lr=hp.lr, end_lr=hp.lr, steps=1)
    for (name, a), b in zip(trained.state_dict().items(), probed.state_dict().values()):
        assert torch.equal(a, b), name
    unaugmented = new_model()
    lr_range_test(unaugmented, one_batch, Hyperparams(**{**hp.as_dict(), "jitter": 0.0}), Setup(CPU, splits.mean,
                  splits.std, 3, acceleration=acceleration), start_lr=hp.lr, end_lr=hp.lr, steps=1)
    assert not torch.equal(unaugmented[0][0].weight, probed[0][0].weight), "the comparison sees augmentation"


def test_one_lr_per_step_and_a_stop_at_divergence(splits):
    result = lr_range_test(new_model("mlp"), splits.train, Hyperparams(optimizer="sgd", momentum=0.9), Setup(CPU,
                           splits.mean, splits.std, 0), start_lr=1e-4, end_lr=1e4, steps=81)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert result.lrs[0] == pytest.approx(1e-4) and ratios == pytest.approx([10 ** 0.1] * len(ratios))
    assert 10 < len(result.lrs) < 81, "sgd at lr 1e4 diverges: the test stops before its last step"
    assert all(math.isfinite(loss) for loss in result.losses)
    assert max(result.losses) <= 4 * min(result.losses)
    assert result.lrs[0] < result.suggested_lr < result.min_loss_lr
