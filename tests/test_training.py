"""The trainer and the batch transforms on real digits."""

from __future__ import annotations

import math

import pytest
import torch

from hpo.data.splits import load_splits
from hpo.data.transforms import color_jitter
from hpo.train.device import seed_everything
from hpo.train.hyperparams import Hyperparams
from hpo.train.trainer import Setup, evaluate, fit
from hpo.models import MODELS, create_model


@pytest.fixture(scope="module")
def splits():
    return load_splits("digits", {}, val_fraction=0.2, test_fraction=0.2, split_seed=0)


def test_splits_are_stratified_disjoint_and_fixed(splits):
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1149, 288, 360)
    counts = torch.bincount(splits.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class
    again = load_splits("digits", {}, 0.2, 0.2, 0)
    assert torch.equal(again.test.images, splits.test.images)
    assert splits.channels == 1 and splits.image_size == (8, 8) and len(splits.class_names) == 10


def train(splits, hp, epochs=3, seed=0, model="digits_cnn"):
    seed_everything(seed)
    net = create_model(model, num_classes=10, in_channels=1, image_size=(8, 8))
    results = list(fit(net, splits.train, hp, epochs, Setup(torch.device("cpu"), splits.mean, splits.std, seed),
                       val=splits.val))
    return net, results


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
@pytest.mark.parametrize("scheduler", ["none", "step", "cosine", "onecycle"])
def test_every_optimizer_and_schedule_learns(splits, optimizer, scheduler):
    lr = {"adam": 3e-3, "adamw": 3e-3, "sgd": 0.05, "rmsprop": 1e-3}[optimizer]
    hp = Hyperparams(lr=lr, optimizer=optimizer, scheduler=scheduler, jitter=0.3, label_smoothing=0.1)
    _, results = train(splits, hp)
    assert [r.epoch for r in results] == [1, 2, 3]
    assert all(math.isfinite(r.train_loss) for r in results)
    assert results[-1].val_accuracy > 0.5
    assert results[-1].train_loss < results[0].train_loss


def test_same_seed_same_training(splits):
    hp = Hyperparams(lr=3e-3, jitter=0.3)
    _, first = train(splits, hp, epochs=2, seed=5)
    _, second = train(splits, hp, epochs=2, seed=5)
    assert [(r.train_loss, r.val_accuracy) for r in first] == [(r.train_loss, r.val_accuracy) for r in second]


def test_mlp_and_evaluate(splits):
    net, results = train(splits, Hyperparams(lr=3e-3), model="mlp")
    scores = evaluate(net, splits.val, Setup(torch.device("cpu"), splits.mean, splits.std))
    assert scores.accuracy == pytest.approx(results[-1].val_accuracy)
    assert scores.n_images == 288
    assert set(MODELS.names()) >= {"digits_cnn", "mlp"}


def test_divergence_shows_as_non_finite_loss(splits):
    # Without BatchNorm the weights overflow; the BatchNorm CNN stays finite even at lr 1e10 (measured:
    # training loss 2.6e16 in the first epoch, then 1.8e10), as BatchNorm rescales what the steps blow up.
    _, results = train(splits, Hyperparams(lr=1e6, optimizer="sgd", momentum=0.9), epochs=2, model="mlp")
    assert not math.isfinite(results[-1].train_loss) and not math.isfinite(results[-1].val_loss)
    assert results[-1].val_accuracy < 0.2  # NaN logits: argmax picks one class for every image


def test_color_jitter():
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(64, 3, 16, 16, generator=gen)
    assert torch.equal(color_jitter(rgb, 0.0), rgb)
    out = color_jitter(rgb.clone(), 1.0, torch.Generator().manual_seed(1))
    assert out.shape == rgb.shape and out.min() >= 0 and out.max() <= 1
    per_image_change = (out - rgb).abs().mean(dim=(1, 2, 3))
    assert per_image_change.std() > 0, "each image draws its own factors"
    again = color_jitter(rgb.clone(), 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    gray = torch.rand(8, 1, 8, 8)
    assert color_jitter(gray.clone(), 0.5, torch.Generator().manual_seed(0)).shape == gray.shape
    # The hue shift is torchvision's adjust_hue, one factor per image; gray pixels stay gray.
    from torchvision.transforms.v2.functional import adjust_hue

    from hpo.data.transforms import _shift_hue
    turns = torch.tensor([-0.5, -0.2, 0.0, 0.05, 0.3, 0.45, 0.1, -0.05])
    expected = torch.stack([adjust_hue(image, factor.item()) for image, factor in zip(rgb, turns)])
    assert torch.allclose(_shift_hue(rgb[:8], turns), expected, atol=1e-5)
    flat = torch.full((4, 3, 2, 2), 0.5)
    assert torch.allclose(_shift_hue(flat, torch.full((4,), 0.3)), flat, atol=1e-5)
