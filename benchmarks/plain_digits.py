"""The digits study as a user would write it without hpo: plain Optuna + PyTorch (+ MLflow), one file.

The same data split sizes, network (digits_cnn, width 16), search space, sampler (TPE, 8 start-up trials),
pruner (median, 4 start-up trials, 2 warm-up epochs), budget (24 trials x 10 epochs, the recipe enqueued as
trial 0) and retrain (15 epochs on train+validation, then the test split once) as ``studies/digits.yaml``;
torch's defaults everywhere else (its thread count, a DataLoader over in-memory tensors). With ``--mlflow
URI`` every trial is a nested run with its params and per-epoch metrics, and the retrain logs its model.

    python benchmarks/plain_digits.py [--trials 24] [--epochs 10] [--retrain-epochs 15] [--mlflow sqlite:///m.db]

``benchmarks/against_plain.py`` times it against ``hpo run studies/digits.yaml``.
"""

from __future__ import annotations

import argparse
import time

import optuna
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

RECIPE = {"lr": 0.001, "optimizer": "adam", "batch_size": 64, "weight_decay": 1.0e-6, "scheduler": "none",
          "jitter": 0.0, "label_smoothing": 0.0}


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def network(width=16):
    return nn.Sequential(block(1, width), block(width, 2 * width), nn.MaxPool2d(2), block(2 * width, 4 * width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, 10))


def data():
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.2, stratify=y_rest, random_state=0)
    mean, std = x_train.mean(), x_train.std()
    norm = lambda t: (t - mean) / std  # noqa: E731
    return (norm(x_train), y_train), (norm(x_val), y_val), (norm(x_test), y_test)


def suggest(trial):
    p = {"lr": trial.suggest_float("lr", 1e-4, 0.3, log=True),
         "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
         "optimizer": trial.suggest_categorical("optimizer", ["adam", "adamw", "sgd", "rmsprop"])}
    if p["optimizer"] in ("sgd", "rmsprop"):
        p["momentum"] = trial.suggest_float("momentum", 0.5, 0.99)
    p["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    p["scheduler"] = trial.suggest_categorical("scheduler", ["none", "step", "cosine", "onecycle"])
    p["jitter"] = trial.suggest_float("jitter", 0.0, 0.5)
    p["label_smoothing"] = trial.suggest_float("label_smoothing", 0.0, 0.2)
    return p


def optimizer_of(p, params):
    if p["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=p["lr"], weight_decay=p["weight_decay"])
    if p["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=p["lr"], weight_decay=p["weight_decay"])
    if p["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"])
    return torch.optim.RMSprop(params, lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"])


def scheduler_of(p, opt, epochs, steps):
    if p["scheduler"] == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, epochs // 3), gamma=0.1), "epoch"
    if p["scheduler"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs), "epoch"
    if p["scheduler"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p["lr"], total_steps=epochs * steps), "step"
    return None, None


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


EPOCHS_TRAINED = [0]  # in the search, for the comparison with hpo's


def train(p, train_set, epochs, seed, val=None, report=None):
    torch.manual_seed(seed)
    model = network()
    loader = DataLoader(TensorDataset(*train_set), batch_size=p["batch_size"], shuffle=True)
    opt = optimizer_of(p, model.parameters())
    sched, every = scheduler_of(p, opt, epochs, len(loader))
    jitter = v2.ColorJitter(brightness=0.4 * p["jitter"], contrast=0.4 * p["jitter"]) if p["jitter"] else None
    for epoch in range(1, epochs + 1):
        if report is not None:
            EPOCHS_TRAINED[0] += 1
        model.train()
        for x, y in loader:
            if jitter is not None:
                x = jitter(x)
            opt.zero_grad()
            F.cross_entropy(model(x), y, label_smoothing=p["label_smoothing"]).backward()
            opt.step()
            if every == "step":
                sched.step()
        if every == "epoch":
            sched.step()
        if report is not None:
            report(epoch, accuracy(model, *val))
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="trials in the search (default: 24)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial (default: 10)")
    parser.add_argument("--retrain-epochs", type=int, default=15, help="epochs of the retrain (default: 15)")
    parser.add_argument("--mlflow", metavar="URI", help="log to MLflow at URI (default: no MLflow)")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train_set, val_set, test_set = data()
    mlflow = None
    if args.mlflow:
        import mlflow

        mlflow.set_tracking_uri(args.mlflow)
        mlflow.set_experiment("plain-digits")
    started = time.time()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=8),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2))
    study.enqueue_trial(RECIPE)

    def objective(trial):
        p = suggest(trial)
        scores = []

        def report(epoch, score):
            scores.append(score)
            if mlflow:
                mlflow.log_metric("val_accuracy", score, step=epoch)
            trial.report(score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        if mlflow:
            with mlflow.start_run(run_name=f"trial {trial.number}", nested=True):
                mlflow.log_params(p)
                train(p, train_set, args.epochs, trial.number, val_set, report)
        else:
            train(p, train_set, args.epochs, trial.number, val_set, report)
        return scores[-1]

    if mlflow:
        with mlflow.start_run(run_name="study"):
            study.optimize(objective, n_trials=args.trials)
    else:
        study.optimize(objective, n_trials=args.trials)
    best = {**RECIPE, **study.best_params}
    x_all, y_all = torch.cat([train_set[0], val_set[0]]), torch.cat([train_set[1], val_set[1]])
    model = train(best, (x_all, y_all), args.retrain_epochs, study.best_trial.number)
    test_accuracy = accuracy(model, *test_set)
    if mlflow:
        with mlflow.start_run(run_name="retrain"):
            mlflow.log_params(best)
            mlflow.log_metric("test_accuracy", test_accuracy)
            mlflow.pytorch.log_model(model, name="model", input_example=test_set[0][:1].numpy())
    print(f"plain: best val_accuracy {study.best_value:.4f} (trial {study.best_trial.number}), "
          f"test_accuracy {test_accuracy:.4f}, {EPOCHS_TRAINED[0]} epochs in the search, {time.time() - started:.1f}s")


if __name__ == "__main__":
    main()
