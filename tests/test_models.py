"""Every registered model trains a step; pretrained weights load from a local file."""

from __future__ import annotations

import pytest
import torch
import torchvision

from hpo.models import MODELS, create_model
from hpo.models.pretrained import load_pretrained

INPUTS = {  # a size each architecture is meant for, small enough for a CPU test
    "digits_cnn": (1, (8, 8)), "mlp": (1, (8, 8)), "simple_cnn": (3, (32, 32)), "se_prelu_net": (3, (32, 32)),
    "resnet18": (3, (32, 32)), "resnet34": (3, (32, 32)), "resnet50": (3, (64, 64)),
}


def test_every_registered_model_is_covered():
    shipped = {name for name in MODELS.names() if not name.endswith("_for_tests")}
    assert shipped == set(INPUTS)


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_every_model_trains_a_step(name):
    channels, size = INPUTS[name]
    for in_channels in {channels, 1, 3}:
        torch.manual_seed(0)
        model = create_model(name, num_classes=7, in_channels=in_channels, image_size=size)
        x = torch.randn(4, in_channels, *size)
        labels = torch.tensor([0, 1, 2, 6])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        before = [p.detach().clone() for p in model.parameters()]
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        assert model(x).shape == (4, 7)
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_resnet_stems():
    cifar = create_model("resnet18", num_classes=10, in_channels=3, image_size=(32, 32), stem="cifar")
    assert cifar.conv1.kernel_size == (3, 3) and isinstance(cifar.maxpool, torch.nn.Identity)
    imagenet = create_model("resnet18", num_classes=10, in_channels=3, image_size=(224, 224))
    assert imagenet.conv1.kernel_size == (7, 7)
    with pytest.raises(ValueError, match="stem must be one of imagenet, cifar"):
        create_model("resnet18", num_classes=10, in_channels=3, image_size=(32, 32), stem="tiny")


@pytest.mark.parametrize("wrap", ["state_dict", "torchvision checkpoint", "hpo checkpoint"])
def test_pretrained_loads_and_replaces_the_head(tmp_path, wrap):
    source = torchvision.models.resnet18(num_classes=1000)  # torchvision's ImageNet layout
    weights = source.state_dict()
    stored = {"state_dict": weights} if wrap == "hpo checkpoint" else \
        {"model": weights, "epoch": 3} if wrap == "torchvision checkpoint" else weights
    path = tmp_path / "weights.pth"
    torch.save(stored, path)
    with pytest.warns(UserWarning, match="weights not loaded"):
        model = create_model("resnet18", num_classes=10, in_channels=3, image_size=(224, 224), pretrained=str(path))
    assert torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc.weight.shape == (10, 512)  # the new head keeps its initialisation


def test_pretrained_rgb_stem_into_grayscale(tmp_path):
    source = torchvision.models.resnet18(num_classes=10)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    model = create_model("resnet18", num_classes=10, in_channels=1, image_size=(64, 64))
    skipped = load_pretrained(model, tmp_path / "w.pth")
    assert skipped == []
    assert torch.allclose(model.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
