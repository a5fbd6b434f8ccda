"""`hpo bench`: how fast the trainer is, measured against references taken in the same run.

1. our trainer vs a plain PyTorch loop (same model, data, precision, batch): images/s and their ratio;
   with ``--folder``, also the trainer streaming that image folder from disk;
2. the trainer's images/s against the device's ceiling: training FLOPs per image x images/s, divided
   by the FLOP/s of a large matrix multiply timed on the same device;
3. trials/hour with k workers packed on one device vs one worker (``hpo run --gpus``);
4. a short study with its pruner vs without: epochs trained and the best value of each.

Importable without MLflow (parts 3 and 4 run ``hpo run`` in subprocesses). Nothing here asserts a
speed: the numbers are printed for a person to read (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn

from hpo.data.images import LabelledImages
from hpo.data.transforms import normalize, to_float
from hpo.study.record import TrialRecord
from hpo.train.device import Acceleration, seed_everything
from hpo.train.hyperparams import Hyperparams
from hpo.train.trainer import Setup, fit
from hpo.models import create_model


@dataclass(frozen=True)
class BenchConfig:
    device: str
    model: str = "resnet18"
    model_args: tuple = (("stem", "cifar"),)
    image_size: int = 32
    channels: int = 3
    classes: int = 10
    batch_size: int = 256
    steps: int = 30  # timed optimizer steps per measurement
    packed: int = 4  # workers per device for part 3
    study_trials: int = 12  # trials of the short studies in parts 3 and 4
    study_epochs: int = 6
    folder: str | None = None  # an image folder to stream from in part 1 as well
    repeats: int = 5  # part 1: trainer and plain loop measured this many times each, alternating


def synthetic_data(config: BenchConfig, device: torch.device) -> LabelledImages:
    generator = torch.Generator().manual_seed(0)
    n = config.batch_size * config.steps
    images = torch.randint(0, 256, (n, config.channels, config.image_size, config.image_size), dtype=torch.uint8,
                           generator=generator)
    labels = torch.randint(0, config.classes, (n,), generator=generator)
    return LabelledImages(images, labels).to(device)


def new_model(config: BenchConfig) -> nn.Module:
    seed_everything(0)
    return create_model(config.model, num_classes=config.classes, in_channels=config.channels,
                        image_size=(config.image_size, config.image_size), **dict(config.model_args))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer_images_per_s(config: BenchConfig, data, device: torch.device) -> float:
    hp = Hyperparams(lr=0.01, optimizer="sgd", batch_size=config.batch_size)
    setup = Setup(device, (0.5,) * config.channels, (0.25,) * config.channels)
    results = list(fit(new_model(config), data, hp, 3, setup))
    return len(data) / min(r.epoch_time_s for r in results[1:])  # the first epoch warms up; best of the rest


def streamed_images_per_s(config: BenchConfig, folder: str, device: torch.device) -> tuple[float, int]:
    """The trainer reading ``batch_size x steps`` images of an image folder from disk (data/streaming.py:
    DataLoader workers, JPEG decode on a GPU), resized to ``image_size``; and the number of workers."""
    from hpo.data.folder import load_folder

    source = load_folder(folder, size=config.image_size, channels=config.channels, stream=True)
    n = min(len(source.pool), config.batch_size * config.steps)
    files = source.pool.subset(torch.randperm(len(source.pool), generator=torch.Generator().manual_seed(0))[:n])
    config = replace(config, classes=len(source.class_names))
    return trainer_images_per_s(config, files.to(device), device), files.table.workers


def reference_images_per_s(config: BenchConfig, data: LabelledImages, device: torch.device) -> float:
    """The loop of a PyTorch tutorial: forward, loss, backward, step, over the same batches."""
    model = new_model(config).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    mean, std = (0.5,) * config.channels, (0.25,) * config.channels
    # The trainer's precision, nothing else: a tutorial's loop knows no memory formats or fused optimizers.
    acceleration = Acceleration.for_device(device)

    def epoch():
        order = torch.randperm(len(data), device=device)
        for step in range(config.steps):
            index = order[step * config.batch_size:(step + 1) * config.batch_size]
            x = normalize(to_float(data.images[index]), mean, std)
            with acceleration.autocast(device):
                loss = loss_fn(model(x), data.labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    model.train()
    epoch()  # warm-up, as the trainer's first epoch
    timings = []
    for _ in range(2):  # best of two, as for the trainer
        synchronize(device)
        started = time.perf_counter()
        epoch()
        synchronize(device)
        timings.append(time.perf_counter() - started)
    return len(data) / min(timings)


def next_to_busy_process(config: BenchConfig, data: LabelledImages, forward_flops: float) -> dict:
    """On the CPU: the trainer with the threads hpo chooses (hpo/train/threads.py) and the plain loop with
    torch's default (one per core), idle and next to one process that keeps a core busy, alternating, medians
    of ``repeats``. What a shared machine does to each."""
    from hpo.train.threads import apply_threads, choose_threads

    default = torch.get_num_threads()
    measured = {}
    for load in ("idle", "busy"):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load == "busy" else None
        try:
            time.sleep(0.5 if hog else 0)  # the busy process running before the choice, as in a study
            chosen = choose_threads(None, forward_flops * config.batch_size, batch=config.batch_size)
            trainer, plain = [], []
            for _ in range(config.repeats):
                apply_threads(chosen)
                trainer.append(trainer_images_per_s(config, data, torch.device("cpu")))
                torch.set_num_threads(default)
                plain.append(reference_images_per_s(config, data, torch.device("cpu")))
        finally:
            torch.set_num_threads(default)
            if hog:
                hog.kill()
                hog.wait()
        measured[load] = {"trainer_threads": chosen.count, "plain_threads": default,
                          "trainer_images_per_s": statistics.median(trainer),
                          "plain_images_per_s": statistics.median(plain)}
    for who in ("trainer", "plain"):  # how much longer the same work takes next to the busy process
        measured[f"{who}_busy_over_idle"] = (measured["idle"][f"{who}_images_per_s"]
                                             / measured["busy"][f"{who}_images_per_s"])
    return measured


def training_flops_per_image(config: BenchConfig, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model = new_model(config).to(device)
    x = torch.randn(2, config.channels, config.image_size, config.image_size, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 2


def matmul_flops_per_s(device: torch.device) -> float:
    """The device's dense matrix-multiply rate in the trainer's precision (bf16 on CUDA, fp32 on CPU)."""
    size = 8192 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if Acceleration.for_device(device).bf16 else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    repeats = 20 if device.type == "cuda" else 5
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - started)


def short_study(workdir: Path, config: BenchConfig, name: str, pruner: str) -> Path:
    import yaml

    study = {"name": name, "seed": 0, "data": {"name": "digits"}, "model": {"name": "digits_cnn", "width": 16},
             "budget": {"trials": config.study_trials, "epochs": config.study_epochs},
             "search": {"lr": {"low": 1e-4, "high": 0.3, "log": True}, "optimizer": ["adam", "sgd"],
                        "batch_size": [32, 64]},
             "sampler": {"name": "tpe", "n_startup_trials": 4},
             "pruner": {"name": pruner} if pruner == "none" else {"name": pruner, "n_startup_trials": 3,
                                                                  "n_warmup_steps": 1}}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@functools.cache
def mlflow_installed() -> bool:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return True


def run_study(workdir: Path, study_file: Path, extra: list[str]) -> float:
    """``hpo run`` as a user runs it: with MLflow logging where MLflow is installed, else --no-tracking."""
    tracking = (["--tracking-uri", f"sqlite:///{workdir}/mlflow.db", "--artifacts", str(workdir / "art")]
                if mlflow_installed() else ["--no-tracking"])
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "hpo", "run", str(study_file), "--no-retrain",
                             "--storage", f"sqlite:///{workdir}/hpo.db", *tracking, *extra],
                            capture_output=True, text=True, cwd=workdir)
    if result.returncode != 0:
        raise RuntimeError(f"hpo run {study_file.name} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def packed_trials_per_hour(config: BenchConfig, device: torch.device) -> tuple[float, float]:
    slot = "cpu" if device.type == "cpu" else str(device.index or 0)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        alone = run_study(workdir, short_study(workdir, config, "alone", "none"), ["--gpus", slot])
        packed = run_study(workdir, short_study(workdir, config, "packed", "none"),
                           ["--gpus", slot, "--trials-per-gpu", str(config.packed)])
    return config.study_trials * 3600 / alone, config.study_trials * 3600 / packed


def pruning_effect(config: BenchConfig, device: torch.device) -> dict:
    import optuna

    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for pruner in ("median", "none"):
            run_study(workdir, short_study(workdir, config, f"pruner-{pruner}", pruner), ["--device", str(device)])
            study = optuna.load_study(study_name=f"pruner-{pruner}", storage=f"sqlite:///{workdir}/hpo.db")
            report[pruner] = {"epochs": sum(TrialRecord(t).epochs for t in study.trials),
                              "best_value": study.best_value}
    return report


def run_bench(config: BenchConfig, print_line=print) -> dict:
    device = torch.device(config.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print_line(f"hpo bench on {name}, torch {torch.__version__}: {config.model} {dict(config.model_args)} on "
               f"{config.channels}x{config.image_size}x{config.image_size}, batch {config.batch_size}")
    data = synthetic_data(config, device)
    trainers, references = [], []
    for _ in range(config.repeats):  # alternating, so that a slow spell of the machine hits both
        trainers.append(trainer_images_per_s(config, data, device))
        references.append(reference_images_per_s(config, data, device))
    ratios = sorted(r / t for t, r in zip(trainers, references))
    trainer, reference = statistics.median(trainers), statistics.median(references)
    ratio = statistics.median(ratios)
    print_line(f"1. trainer {trainer:,.0f} img/s, plain loop {reference:,.0f} img/s (medians of {config.repeats}): "
               f"the trainer takes {ratio:.3f}x the plain loop's time ({ratios[0]:.3f}-{ratios[-1]:.3f} over the "
               f"repetitions)")
    busy = None
    if device.type == "cpu":
        from hpo.study.objectives import measure_costs

        forward = measure_costs(new_model(config), ("flops",), config.channels, (config.image_size,) * 2,
                                torch.device("cpu"))["flops"]
        busy = next_to_busy_process(config, data, forward)
        print_line(f"   next to one busy process: the trainer ({busy['busy']['trainer_threads']} thread(s), hpo's "
                   f"choice) {busy['busy']['trainer_images_per_s']:,.0f} img/s, {busy['trainer_busy_over_idle']:.2f}x "
                   f"its idle time ({busy['idle']['trainer_threads']} thread(s)); the plain loop "
                   f"({busy['busy']['plain_threads']} threads, torch's default) "
                   f"{busy['busy']['plain_images_per_s']:,.0f} img/s, {busy['plain_busy_over_idle']:.2f}x its idle time")
    streamed = None
    if config.folder:
        streamed, workers = streamed_images_per_s(config, config.folder, device)
        print_line(f"   streamed from {config.folder} ({workers} DataLoader workers): {streamed:,.0f} img/s, "
                   f"{streamed / trainer:.2f}x the device-resident rate")
    flops = training_flops_per_image(config, device)
    peak = matmul_flops_per_s(device)
    print_line(f"2. {flops / 1e9:.3f} GFLOP per training image x {trainer:,.0f} img/s = "
               f"{flops * trainer / 1e12:.3f} TFLOP/s, {flops * trainer / peak:.1%} of the "
               f"{peak / 1e12:.2f} TFLOP/s a matrix multiply reaches here")
    alone, packed = packed_trials_per_hour(config, device)
    logging = "MLflow logging" if mlflow_installed() else "no MLflow here: --no-tracking"
    print_line(f"3. short digits study ({logging}): {alone:,.0f} trials/hour with one worker, {packed:,.0f} "
               f"with {config.packed} packed on the device: {packed / alone:.2f}x")
    pruning = pruning_effect(config, device)
    print_line(f"4. {config.study_trials} trials x {config.study_epochs} epochs: with the median pruner "
               f"{pruning['median']['epochs']} epochs (best {pruning['median']['best_value']:.4f}), without "
               f"{pruning['none']['epochs']} (best {pruning['none']['best_value']:.4f}): "
               f"{pruning['median']['epochs'] / pruning['none']['epochs']:.2f}x the epochs")
    return {
        "device": name, "torch": str(torch.__version__), "config": asdict(config),
        "trainer_images_per_s": trainer, "reference_images_per_s": reference, "overhead_ratio": ratio,
        "overhead_ratios": ratios, "next_to_busy_process": busy,
        "streamed_images_per_s": streamed,
        "training_flops_per_image": flops, "matmul_flops_per_s": peak, "ceiling_fraction": flops * trainer / peak,
        "trials_per_hour_alone": alone, "trials_per_hour_packed": packed, "packed_speedup": packed / alone,
        "mlflow_logging": mlflow_installed(), "pruning": pruning,
        "pruning_epoch_ratio": pruning["median"]["epochs"] / pruning["none"]["epochs"],
    }
