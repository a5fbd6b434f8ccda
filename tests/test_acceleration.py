"""The CUDA speed-ups (bf16 autocast, channels_last, fused optimizers) forced on, on a CPU: each really runs,
and training learns as the default path does."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from hpo.data.splits import load_splits
from hpo.train.device import Acceleration, seed_everything
from hpo.train.hyperparams import Hyperparams
from hpo.train.trainer import Setup, fit
from hpo.models import create_model

CPU = torch.device("cpu")
ALL_ON = Acceleration(bf16=True, channels_last=True, fused=True)


@pytest.fixture(scope="module")
def splits():
    return load_splits("digits", {}, val_fraction=0.2, test_fraction=0.2, split_seed=0)


def train_and_watch(splits, hp, acceleration):
    """Two epochs of digits; what the convolutions and the optimizer saw in every training step."""
    seed_everything(0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8), width=8)
    # A 1-channel conv's weight is channels_last and contiguous at once; the others tell the two apart.
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1]
    seen = {"weights_channels_last": set(), "outputs_channels_last": set(), "output_dtypes": set(), "fused": set()}

    def on_conv(module, inputs, output):
        if module.training:
            seen["weights_channels_last"].add(module.weight.is_contiguous(memory_format=torch.channels_last))
            seen["outputs_channels_last"].add(output.is_contiguous(memory_format=torch.channels_last))
            seen["output_dtypes"].add(output.dtype)

    def on_step(optimizer, args, kwargs):
        seen["fused"].add(optimizer.defaults["fused"])

    hooks = [conv.register_forward_hook(on_conv) for conv in convs]
    hooks.append(register_optimizer_step_pre_hook(on_step))
    try:
        results = list(fit(model, splits.train, hp, 2, Setup(CPU, splits.mean, splits.std, 0,
                           acceleration=acceleration), val=splits.val))
    finally:
        for hook in hooks:
            hook.remove()
    return results, seen


def test_the_cpu_default_is_all_off_and_cuda_all_on():
    assert Acceleration.for_device(CPU) == Acceleration(bf16=False, channels_last=False, fused=False)
    assert Acceleration.for_device(torch.device("cuda")) == ALL_ON


@pytest.mark.parametrize("optimizer, lr", [("adam", 3e-3), ("adamw", 3e-3), ("sgd", 0.05)])
def test_bf16_channels_last_and_fused_train_on_cpu(splits, optimizer, lr):
    hp = Hyperparams(lr=lr, optimizer=optimizer, momentum=0.9)
    default, default_seen = train_and_watch(splits, hp, None)
    forced, forced_seen = train_and_watch(splits, hp, ALL_ON)

    assert default_seen == {"weights_channels_last": {False}, "outputs_channels_last": {False},
                            "output_dtypes": {torch.float32}, "fused": {None}}, "the CPU default is all off"
    assert forced_seen == {"weights_channels_last": {True}, "outputs_channels_last": {True},
                           "output_dtypes": {torch.bfloat16}, "fused": {True}}
    assert all(math.isfinite(r.train_loss) for r in forced)
    assert forced[-1].val_accuracy > 0.5  # chance is 0.1
    # bf16 rounds the forward pass; measured: within 0.01 of the fp32 accuracy for all three optimizers.
    assert forced[-1].val_accuracy == pytest.approx(default[-1].val_accuracy, abs=0.05)
    assert forced[-1].train_loss == pytest.approx(default[-1].train_loss, rel=0.05)
