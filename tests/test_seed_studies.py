"""Every write-up in SEEDS.md is a study whose trial 0 is its recipe; a tiny version of each runs on CPU."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
import torchvision

from hpo.spec.study_file import load_study

from datagen import write_cifar, write_image_folder
from helpers import REPO, hpo

STUDIES = sorted(p.name for p in (REPO / "studies").glob("*.yaml"))

# The recipes as SEEDS.md states them (typed here from the write-ups, not from the study files).
# "hp" are trial 0's hyperparameters; the other keys are study fields.
RECIPES = {
    "seed000_epoch_budgets.yaml": {
        "model": "resnet18", "retrain_epochs": (50, 100, 600),
        "hp": {"lr": 0.001, "optimizer": "adam"}},
    "seed001_imagenet_resnet50_swa.yaml": {
        "model": "resnet50", "data": "imagenet", "epochs": 100, "checkpoint_every": 5,
        "hp": {"swa_start": 32, "scheduler": "onecycle", "warmup_epochs": 10, "grad_clip": 1.0,
               "weight_decay": 1e-4, "batch_size": 256, "lr": 5e-4}},
    "seed002_cifar100_simple_cnn.yaml": {
        "model": "simple_cnn", "data": "cifar100", "epochs": 5, "hp": {"scheduler": "step", "lr": 0.1}},
    "seed002_cifar100_resnet34.yaml": {
        "model": "resnet34", "data": "cifar100", "epochs": 100, "hp": {"scheduler": "cosine", "lr": 9e-4}},
    "seed002_cifar100_resnet50_pretrained.yaml": {
        "model": "resnet50", "data": "cifar100", "epochs": 110, "pretrained": True, "normalize": "imagenet",
        "keep_best": True,
        "hp": {"head_epochs": 10, "head_lr": 1e-3, "lr": 1e-4, "optimizer": "adam", "weight_decay": 5e-4,
               "scheduler": "cosine", "batch_size": 128, "label_smoothing": 0.1, "crop_padding": 4, "hflip": 0.5}},
    "seed003_imagenet_resnet50.yaml": {
        "model": "resnet50", "data": "imagenet", "epochs": 39,
        "hp": {"rrc_scale_min": 0.08, "rrc_ratio_max": pytest.approx(4 / 3), "hflip": 0.5, "jitter": 0.5,
               "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "scheduler": "onecycle",
               "batch_size": 128}},
    "seed004_cifar10_se_prelu.yaml": {
        "model": "se_prelu_net", "data": "cifar10", "epochs": 40, "normalize": "half",
        "hp": {"rotation": 15, "hflip": 0.5, "batch_size": 64, "optimizer": "rmsprop", "lr": 1e-3,
               "momentum": 0.9, "scheduler": "cosine"}},
}


def trial0(spec):
    return spec.search.resolve(spec.enqueue[0]) if spec.enqueue else None


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_trial0_is_the_write_ups_recipe(name):
    spec = load_study(REPO / "studies" / name)
    recipe = RECIPES[name]
    hp = trial0(spec)
    assert hp is not None, "trial 0 must be enqueued"
    for field, value in recipe["hp"].items():
        assert getattr(hp, field) == value, f"{name}: trial 0 {field} = {getattr(hp, field)}, recipe {value}"
    assert spec.model.name == recipe["model"]
    if "data" in recipe:
        assert spec.data.name == recipe["data"]
    if "epochs" in recipe:
        assert spec.budget.epochs == recipe["epochs"] and recipe["epochs"] in spec.budget.retrain.epochs
    if "retrain_epochs" in recipe:
        assert spec.budget.retrain.epochs == recipe["retrain_epochs"]
    assert spec.data.normalize == recipe.get("normalize", "auto")
    assert ("pretrained" in spec.model.args) == recipe.get("pretrained", False)
    assert spec.budget.retrain.keep_best == recipe.get("keep_best", False)
    assert spec.budget.retrain.checkpoint_every == recipe.get("checkpoint_every", 0)


def test_seed_specific_choices():
    specs = {name: load_study(REPO / "studies" / name) for name in RECIPES}
    assert trial0(specs["seed002_cifar100_resnet50_pretrained.yaml"]).jitter > 0  # "moderate ColorJitter"
    se = trial0(specs["seed004_cifar10_se_prelu.yaml"])
    assert se.rrc_scale_min < 1 and se.label_smoothing > 0 and se.accumulation > 1
    assert specs["seed000_epoch_budgets.yaml"].search.searched  # it searches what 000 varied by hand


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar(root / "cifar10", 10, per_class_train=4, per_class_test=2)
    write_cifar(root / "cifar100", 100, per_class_train=2, per_class_test=1)
    wnids = ["n01440764", "n01443537", "n01484850"]
    write_image_folder(root / "imagenet" / "train", wnids, 4, sizes=((40, 36), (36, 40)), suffix=".JPEG")
    write_image_folder(root / "imagenet" / "val", wnids, 2, sizes=((40, 40),), suffix=".JPEG")
    torch.save(torchvision.models.resnet50(num_classes=1000).state_dict(), root / "resnet50.pth")
    return root


# The fast lane runs two of them (CIFAR, a model of each kind of module); the others are slow, a full hpo run each.
FAST = ("cifar10_simple_cnn_cpu.yaml", "seed004_cifar10_se_prelu.yaml")


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow)
                                  for n in STUDIES if n != "digits.yaml"])
def test_tiny_version_runs_on_cpu(name, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HPO_CACHE", str(tmp_path / "cache"))
    spec = load_study(REPO / "studies" / name)
    overrides = ["budget.trials=1", "budget.epochs=1", "budget.retrain.epochs=1", "budget.retrain.checkpoint_every=0",
                 f"data.root={tiny_data / spec.data.name}", "data.val_fraction=0.25"]
    if spec.data.name == "imagenet":
        overrides.append("data.size=32")
    if spec.data.name == "cifar100":
        overrides[-1] = "data.val_fraction=0.5"  # every one of the 100 classes in validation
    if "pretrained" in spec.model.args:
        overrides.append(f"model.pretrained={tiny_data / 'resnet50.pth'}")
    args = [a for o in overrides for a in ("--set", o)]
    result = hpo("run", str(REPO / "studies" / name), *args, cwd=tmp_path)
    assert "test_accuracy" in result.stdout
    study = optuna.load_study(study_name=spec.name, storage=f"sqlite:///{tmp_path}/hpo.db")
    if spec.enqueue:  # trial 0 ran the recipe
        assert spec.search.resolve(study.trials[0].params) == spec.search.resolve(spec.enqueue[0])
    assert math.isfinite(study.trials[0].intermediate_values[1])
