"""Training stopped after an epoch and resumed from its saved state ends exactly where it would have.

The state goes through ``torch.save`` and ``torch.load(weights_only=True)``, as a trial's state file
does. Each configuration exercises a part of the state: the optimizer's moments, the schedule (with
warm-up, one-cycle, the SWA anneal), the EMA and SWA averages, the two-phase head-first optimizer, the
random number generators of augmentation and dropout.
"""

from __future__ import annotations

import io

import pytest
import torch

from hpo.data.splits import load_splits
from hpo.train.device import seed_everything
from hpo.train.hyperparams import Hyperparams
from hpo.train.trainer import Setup, fit
from hpo.models import create_model

EPOCHS = 4
CONFIGS = {
    "sgd, momentum, cosine after warm-up, dropout, flips": Hyperparams(
        lr=0.05, optimizer="sgd", momentum=0.9, scheduler="cosine", warmup_epochs=1, batch_size=64, hflip=0.5),
    "adamw, one-cycle, EMA, colour jitter, TrivialAugment": Hyperparams(
        lr=3e-3, optimizer="adamw", weight_decay=1e-4, scheduler="onecycle", ema_decay=0.9, batch_size=64, jitter=0.4,
        augment="trivialaugment"),
    "rmsprop, SWA from epoch 2, accumulation, MixUp or CutMix, erasing": Hyperparams(
        lr=1e-3, optimizer="rmsprop", momentum=0.5, swa_start=2, swa_lr=1e-3, accumulation=2, batch_size=32,
        mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=0.8, erasing=0.25),
    "head first for 3 epochs, step schedule, grad clipping": Hyperparams(
        lr=3e-3, optimizer="adam", head_epochs=3, head_lr=1e-2, scheduler="step", grad_clip=1.0, batch_size=64),
}


@pytest.fixture(scope="module")
def splits():
    return load_splits("digits", {}, val_fraction=0.2, test_fraction=0.2, split_seed=0)


def training(splits, hp, **kwargs):
    seed_everything(3)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8), width=8, dropout=0.2)
    return model, fit(model, splits.train, hp, EPOCHS, Setup(torch.device("cpu"), splits.mean, splits.std, 3),
                      val=splits.val, **kwargs)


def through_a_file(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("stop_after", [1, 3])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_a_resumed_fit_ends_exactly_where_an_uninterrupted_one_does(config, stop_after, splits):
    hp = CONFIGS[config]
    whole_model, whole = training(splits, hp)
    expected = [(r.epoch, r.train_loss, r.val_loss, r.lr) for r in whole]

    states = []
    _, first = training(splits, hp, keep_state=states.append)
    got = [(r.epoch, r.train_loss, r.val_loss, r.lr) for _, r in zip(range(stop_after), first)]
    first.close()  # the process stops here: only the saved state goes on
    resumed_model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8), width=8,
                                 dropout=0.2)
    torch.manual_seed(12345)  # whatever the new process's generators hold, the state replaces it
    rest = fit(resumed_model, splits.train, hp, EPOCHS, Setup(torch.device("cpu"), splits.mean, splits.std, 3),
               val=splits.val, resume=through_a_file(states[-1]))
    got += [(r.epoch, r.train_loss, r.val_loss, r.lr) for r in rest]

    assert states[-1]["epoch"] == stop_after
    assert got == expected
    for name, tensor in whole_model.state_dict().items():
        assert torch.equal(tensor, resumed_model.state_dict()[name]), name


def test_without_a_saved_state_the_resumed_fit_would_differ(splits):
    # The test above can fail: resuming with the state of the wrong epoch changes the results.
    hp = CONFIGS["sgd, momentum, cosine after warm-up, dropout, flips"]
    _, whole = training(splits, hp)
    expected = [r.train_loss for r in whole][2:]
    states = []
    _, first = training(splits, hp, keep_state=states.append)
    for _ in zip(range(2), first):
        pass
    wrong = dict(through_a_file(states[-1]), generator=through_a_file(states[0])["generator"])
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8), width=8, dropout=0.2)
    rest = fit(model, splits.train, hp, EPOCHS, Setup(torch.device("cpu"), splits.mean, splits.std, 3),
               val=splits.val, resume=wrong)
    assert [r.train_loss for r in rest] != expected


# --- a study killed with SIGKILL and rerun: every killed trial goes on from its last epoch --------------

KILLED_STUDY = {
    "name": "killed", "seed": 5,
    "data": {"name": "digits"},
    "model": {"name": "digits_cnn", "width": 8, "dropout": 0.1},
    "budget": {"trials": 6, "epochs": 4, "retrain": {"epochs": 3}},
    "search": {"lr": {"low": 1.0e-3, "high": 0.3, "log": True}, "optimizer": ["adam", "sgd"],
               "momentum": {"low": 0.0, "high": 0.9}, "batch_size": [32, 64], "hflip": 0.5},
    "pruner": {"name": "none"},
    "enqueue": [{"lr": lr, "optimizer": "sgd", "momentum": 0.9, "batch_size": 64}
                for lr in (0.01, 0.02, 0.05, 0.003, 0.1, 0.2)],
}


def _run_until(work, study_file, moment) -> int:
    """Start ``hpo run`` and SIGKILL it at ``moment(folder, output lines so far)``; returns its exit code."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI")}
    process = subprocess.Popen([sys.executable, "-m", "hpo", "run", str(study_file)], cwd=work, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    while process.poll() is None:
        if moment(work, lines):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    return process.wait()


def _state(work, trial, epoch) -> bool:
    """True once trial ``trial`` has kept the state of epoch ``epoch`` (or later)."""
    path = work / "hpo-state" / "killed" / f"trial-{trial}.pt"
    try:
        return path.is_file() and torch.load(path, weights_only=True)["trainer"]["epoch"] >= epoch
    except Exception:  # being replaced at this moment
        return False


@pytest.mark.slow  # six hpo run, five of them killed
def test_a_study_killed_five_times_finishes_as_if_it_never_was(tmp_path):
    import optuna
    from mlflow.tracking import MlflowClient

    from helpers import hpo, write_study

    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for work in (reference, killed):
        work.mkdir()
        write_study(work, KILLED_STUDY)
    hpo("run", str(reference / "study.yaml"), cwd=reference)

    runs_before = []
    moments = [  # SIGKILL ...
        lambda w, out: len(list((w / "mlartifacts").rglob("study.yaml"))) > len(runs_before),  # as MLflow logs
        lambda w, out: _state(w, 1, 1),  # inside trial 1, after its first epoch
        lambda w, out: _state(w, 3, 2),  # inside trial 3, after its second epoch
        lambda w, out: any(line.startswith("trial    4 ") for line in out),  # between trials: 4 just told
        lambda w, out: (w / "hpo-state" / "killed").is_dir() and any(  # in the retrain, after its first epoch
            (w / "hpo-state" / "killed").glob("retrain-*.pt")),
    ]
    kept = {}  # the epoch each killed training had kept, read after the kill
    for moment in moments:
        assert _run_until(killed, killed / "study.yaml", moment) == -9
        runs_before.append(1)
        for path in (killed / "hpo-state" / "killed").glob("*.pt") if (killed / "hpo-state").is_dir() else ():
            kept.setdefault(path.stem, torch.load(path, weights_only=True)["trainer"]["epoch"])
    hpo("run", str(killed / "study.yaml"), cwd=killed)

    def study(work):
        return optuna.load_study(study_name="killed", storage=f"sqlite:///{work}/hpo.db")

    done, expected = study(killed), study(reference)
    finished = [t for t in done.trials if t.state.is_finished() and t.state.name != "FAIL"]
    assert len(finished) == 6 and not [t for t in done.trials if t.state.name in ("RUNNING", "WAITING")]
    assert done.best_value == expected.best_value  # to the bit: the resumed trials trained as if never stopped
    assert sorted(t.value for t in finished) == sorted(t.value for t in expected.trials)
    retries = [t for t in done.trials if "retry_of" in t.user_attrs]
    resumed = {t.user_attrs["retry_of"]: t.user_attrs.get("resumed_after_epoch") for t in retries}
    assert resumed[1] == kept["trial-1"] >= 1 and resumed[3] == kept["trial-3"] >= 2, (resumed, kept)

    def epochs_trained(work):
        client = MlflowClient(f"sqlite:///{work}/mlflow.db")
        runs = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
        assert not [r for r in runs if r.info.status == "RUNNING"]
        trials = [r for r in runs if r.data.tags.get("hpo.role") == "trial"]
        return sum(len(client.get_metric_history(r.info.run_id, "train_loss")) for r in trials), trials

    total, runs = epochs_trained(killed)
    reference_total, _ = epochs_trained(reference)
    assert reference_total == 6 * 4
    assert reference_total <= total <= reference_total + len(moments)  # at most the epoch in progress per kill
    client = MlflowClient(f"sqlite:///{killed}/mlflow.db")
    retrains = client.search_runs([client.get_experiment_by_name("killed").experiment_id],
                                  "tags.`hpo.role` = 'retrain' and attributes.status = 'FINISHED'")
    reference_client = MlflowClient(f"sqlite:///{reference}/mlflow.db")
    [reference_retrain] = reference_client.search_runs([reference_client.get_experiment_by_name("killed").experiment_id],
                                                       "tags.`hpo.role` = 'retrain'")
    [retrain_kept] = [epoch for name, epoch in kept.items() if name.startswith("retrain-")]
    assert len(retrains) == 1 and retrains[0].data.tags["hpo.resumed_after_epoch"] == str(retrain_kept)
    assert retrains[0].data.metrics["test_accuracy"] == reference_retrain.data.metrics["test_accuracy"]
    assert retrains[0].data.metrics["test_loss"] == reference_retrain.data.metrics["test_loss"]
    assert not (killed / "hpo-state").exists()  # every state file gone with its trial, and the emptied folders
    for retry in retries:
        run = next(r for r in runs if r.info.run_id == retry.user_attrs["mlflow_run_id"])
        assert run.data.tags["hpo.retry_of"] == str(retry.user_attrs["retry_of"])
        if "resumed_after_epoch" in retry.user_attrs:  # (one killed before its first epoch ended starts over)
            assert int(run.data.tags["hpo.resumed_after_epoch"]) == retry.user_attrs["resumed_after_epoch"]



@pytest.mark.slow  # two hpo retrain, the first killed
def test_a_killed_retrain_leaves_no_run_running_after_the_next_retrain(tiny_run, tmp_path):
    """SIGKILL in the middle of ``hpo retrain``: its MLflow run stays RUNNING (nothing could end it) until the
    next ``hpo retrain`` starts, which ends it FAILED and says so."""
    import os
    import signal
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    from helpers import copy_study_folder, hpo

    work = copy_study_folder(tiny_run["dir"], tmp_path / "study")
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}
    process = subprocess.Popen([sys.executable, "-m", "hpo", "retrain", "tiny", "--epochs", "40"], cwd=work,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:  # killed once its run is training
        if line.lstrip().startswith("epoch"):
            process.send_signal(signal.SIGKILL)
            break
    assert process.wait() == -9
    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    experiment = client.get_experiment_by_name("tiny").experiment_id
    [left] = client.search_runs([experiment], "attributes.status = 'RUNNING'")
    again = hpo("retrain", "tiny", cwd=work)
    assert f"MLflow run {left.info.run_name} ({left.info.run_id[:8]}) was left RUNNING" in again.stdout
    ended = client.get_run(left.info.run_id)
    assert ended.info.status == "FAILED" and "ended by a later hpo command" in ended.data.tags["hpo.error"]
    assert not client.search_runs([experiment], "attributes.status = 'RUNNING'")
