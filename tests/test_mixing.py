"""MixUp and CutMix draw from the same distributions as torchvision's transforms.v2.MixUp / CutMix.

A batch of four different images is mixed N times each way; the per-pixel mean and standard deviation of the
results, and of the blended one-hot targets, must agree, and a slightly different setting must not.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from hpo.data.mixing import Mixing
from test_transforms import pattern

N = 16000
CLASSES = 4
MEAN_TOLERANCE, STD_TOLERANCE = 0.004, 0.005


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    image = pattern()[:, ::2, ::2]  # 16x16: enough pixels for a box, a quarter of the work
    images = torch.stack([image, image.flip(-1), image.flip(-2), 1 - image])
    return images, torch.arange(CLASSES)


class Moments:
    """Per-element mean and standard deviation of the images and targets added, in float64 running sums."""

    def __init__(self):
        self.n, self.sums = 0, None

    def add(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        parts = [images.double(), images.double().square(), targets.double(), targets.double().square()]
        self.sums = parts if self.sums is None else [a + b for a, b in zip(self.sums, parts)]
        self.n += 1

    def statistics(self) -> list[torch.Tensor]:
        mean_x, square_x, mean_t, square_t = (s / self.n for s in self.sums)
        return [mean_x, (square_x - mean_x.square()).clamp_min(0).sqrt(),
                mean_t, (square_t - mean_t.square()).clamp_min(0).sqrt()]


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, CLASSES).float()


def ours(mixing: Mixing) -> list[torch.Tensor]:
    images, labels = batch()
    moments = Moments()
    for _ in range(N):
        mixed = mixing(images, labels)
        if mixed is None:
            moments.add(images, one_hot(labels))
        else:
            moments.add(mixed.images, mixed.lam * one_hot(labels) + (1 - mixed.lam) * one_hot(mixed.partners))
    return moments.statistics()


def torchvision_(transform, mix_prob: float = 1.0) -> list[torch.Tensor]:
    torch.manual_seed(3)
    images, labels = batch()
    moments = Moments()
    for _ in range(N):
        if torch.rand(()) < mix_prob:
            moments.add(*transform(images, labels))
        else:
            moments.add(images, one_hot(labels))
    return moments.statistics()


def gaps(a, b) -> list[float]:
    return [(x - y).abs().mean().item() for x, y in zip(a, b)]


def agree(a, b) -> bool:
    mean_image, std_image, mean_target, std_target = gaps(a, b)
    return (mean_image < MEAN_TOLERANCE and std_image < STD_TOLERANCE and mean_target < MEAN_TOLERANCE
            and std_target < STD_TOLERANCE)


CASES = {  # name: (ours, torchvision's, ours slightly off, mix_prob)
    "mixup 0.2": (Mixing(mixup_alpha=0.2), v2.MixUp(alpha=0.2, num_classes=CLASSES), Mixing(mixup_alpha=0.3), 1.0),
    "cutmix 1.0": (Mixing(cutmix_alpha=1.0), v2.CutMix(alpha=1.0, num_classes=CLASSES), Mixing(cutmix_alpha=0.7),
                   1.0),
    "either, 0.7 cutmix": (Mixing(mixup_alpha=0.2, cutmix_alpha=1.0, cutmix_prob=0.7),
                           v2.RandomChoice([v2.CutMix(alpha=1.0, num_classes=CLASSES),
                                            v2.MixUp(alpha=0.2, num_classes=CLASSES)], p=[0.7, 0.3]),
                           Mixing(mixup_alpha=0.2, cutmix_alpha=1.0, cutmix_prob=0.5), 1.0),
    "mixup on 60% of batches": (Mixing(mixup_alpha=1.0, mix_prob=0.6), v2.MixUp(alpha=1.0, num_classes=CLASSES),
                                Mixing(mixup_alpha=1.0, mix_prob=0.5), 0.6),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_distribution_as_torchvision(case):
    mine, theirs, off, mix_prob = CASES[case]
    reference = torchvision_(theirs, mix_prob)
    mine, off = ours(mine), ours(off)
    assert agree(mine, reference), gaps(mine, reference)
    assert not agree(off, reference), ("the comparison cannot tell", gaps(off, reference))


def test_the_draws_resume_where_they_stopped():
    images, labels = batch()
    first = Mixing(mixup_alpha=0.4, cutmix_alpha=1.0, seed=5)
    for _ in range(7):
        first(images, labels)
    second = Mixing(mixup_alpha=0.4, cutmix_alpha=1.0, seed=99)
    second.restore(first.state())
    a, b = first(images, labels), second(images, labels)
    assert a.lam == b.lam and torch.equal(a.images, b.images)


@pytest.mark.slow
def test_a_digits_study_searches_the_regularisation_and_the_policy(tmp_path):
    import mlflow
    import optuna

    from helpers import TINY_STUDY, hpo, write_study

    study = {**TINY_STUDY, "name": "mixing", "enqueue": [],
             "budget": {"trials": 3, "epochs": 2, "retrain": {"epochs": 1}},
             "search": {"lr": 0.01, "mixup_alpha": {"low": 0.1, "high": 0.4}, "cutmix_alpha": [0.0, 1.0],
                        "cutmix_prob": {"low": 0.3, "high": 0.7}, "erasing": {"low": 0.0, "high": 0.5},
                        "augment": ["trivialaugment", "randaugment"], "randaugment_magnitude": {"low": 5, "high": 15},
                        "label_smoothing": 0.1}}
    hpo("run", str(write_study(tmp_path, study)), cwd=tmp_path)
    trials = optuna.load_study(study_name="mixing", storage=f"sqlite:///{tmp_path}/hpo.db").trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE and t.value > 0.3 for t in trials)
    assert all(("cutmix_prob" in t.params) == (t.params["cutmix_alpha"] > 0) for t in trials)
    assert all(("randaugment_magnitude" in t.params) == (t.params["augment"] == "randaugment") for t in trials)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("mixing").experiment_id], "tags.`hpo.role` = 'trial'")
    assert {float(r.data.params["mixup_alpha"]) for r in runs} == {t.params["mixup_alpha"] for t in trials}
