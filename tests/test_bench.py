"""`hpo bench` runs all four parts on CPU and reports every field (never a speed: that is for people to read)."""

from __future__ import annotations

import json
import math
import queue
import threading

import pytest
import torch

from datagen import write_image_folder
from helpers import hpo


def test_the_trainer_and_the_plain_loop_are_timed_on_the_same_work():
    """Part 1's two measurements and part 2's FLOP count, in process, on a tiny model (the fast lane's share)."""
    from hpo.bench.training import (BenchConfig, reference_images_per_s, synthetic_data, trainer_images_per_s,
                                    training_flops_per_image)

    cpu = torch.device("cpu")
    config = BenchConfig("cpu", "digits_cnn", (), image_size=8, channels=1, batch_size=16, steps=2)
    data = synthetic_data(config, cpu)
    assert len(data) == 32
    assert trainer_images_per_s(config, data, cpu) > 0 and reference_images_per_s(config, data, cpu) > 0
    assert training_flops_per_image(config, cpu) > 0


def test_one_storage_worker_and_the_reference_time_their_trials(tmp_path):
    """What each worker of hpo bench --storage does, in this process, on a study holding 3 trials."""
    from hpo.bench.storage import _fill, _worker, reference

    url = f"sqlite:///{tmp_path}/bench.db"
    _fill(url, "wal", "fast", 3)
    results = queue.Queue()
    _worker(url, "wal", "fast", 5, 0, threading.Barrier(1), results)
    times = results.get_nowait()
    assert len(times) == 2 and min(times) > 0
    assert reference(timed=2) > 0


@pytest.mark.slow  # the benchmarks: many studies and worker processes
def test_bench_on_cpu_reports_every_part(tmp_path_factory, monkeypatch):
    data = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("HPO_CACHE", str(data / "cache"))
    write_image_folder(data / "jpegs", ["a", "b", "c"], 40, sizes=((12, 10),), mode="L", suffix=".jpg")
    tmp_path = tmp_path_factory.mktemp("work")
    result = hpo("bench", "--device", "cpu", "--model", "digits_cnn", "--image-size", "8", "--channels", "1",
                 "--batch-size", "32", "--steps", "3", "--packed", "2", "--study-trials", "2", "--study-epochs", "2",
                 "--folder", str(data / "jpegs"), "--repeats", "3", "--json", cwd=tmp_path)
    report = json.loads(result.stdout)
    for field in ("trainer_images_per_s", "reference_images_per_s", "overhead_ratio", "ceiling_fraction",
                  "packed_speedup", "pruning_epoch_ratio", "streamed_images_per_s"):
        assert isinstance(report[field], float) and math.isfinite(report[field]) and report[field] > 0, field
    assert report["device"].startswith("CPU")
    ratios = report["overhead_ratios"]  # --repeats 3: the median of three, and their spread
    assert len(ratios) == 3 and ratios == sorted(ratios) and report["overhead_ratio"] == ratios[1]
    assert report["pruning"]["none"]["epochs"] == 2 * 2  # without a pruner every trial runs every epoch
    from hpo.train.threads import usable_cores

    busy = report["next_to_busy_process"]  # next to a busy process, hpo leaves it its core
    assert busy["busy"]["trainer_threads"] <= max(1, usable_cores() - 1)
    assert busy["busy"]["plain_threads"] == busy["idle"]["plain_threads"] >= 1
    assert busy["trainer_busy_over_idle"] > 0 and busy["plain_busy_over_idle"] > 0
    assert f"next to one busy process: the trainer ({busy['busy']['trainer_threads']} thread(s), hpo's choice)" \
        in result.stderr
    lines = result.stderr.splitlines()
    assert [line[:2] for line in lines if line[:1].isdigit()] == ["1.", "2.", "3.", "4."]
    assert list(tmp_path.iterdir()) == [], "the bench leaves no stores behind"


@pytest.mark.slow  # worker processes
def test_storage_bench_times_real_workers():
    """hpo bench --storage's measurement, scaled down: real worker processes on a real SQLite file in hpo's
    mode, a row per worker count, each with both study sizes."""
    from hpo.bench.storage import local_storages, storage_overhead

    lines: list[str] = []
    [wal] = [storage for storage in local_storages() if storage.sqlite_mode == "wal"]
    numbers = storage_overhead([wal], print_line=lines.append, workers_counts=(1, 2), at_sizes=(3, 30), timed=4)
    assert numbers["reference_ms"] > 0
    assert set(numbers["storages"][wal.label]) == {1, 2}
    assert all(set(cell) == {"3", "30"} and min(cell.values()) > 0 for cell in numbers["storages"][wal.label].values())
    assert sum(line.lstrip().startswith(wal.label) for line in lines) == 2


@pytest.mark.slow  # four short studies
def test_hpo_against_the_plain_script_times_both_ways(tmp_path):
    """benchmarks/against_plain.py runs hpo and benchmarks/plain_digits.py with MLflow on and off and reports
    both wall times, their ratio and both test accuracies."""
    import json
    import subprocess
    import sys

    from helpers import REPO

    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "against_plain.py"), "--trials", "2",
                           "--epochs", "1", "--retrain-epochs", "1", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, check=True)
    results = json.loads(done.stdout)
    assert [r["mlflow"] for r in results] == [True, False]
    for r in results:
        assert r["hpo_s"] > 0 and r["plain_s"] > 0 and r["ratio"] == pytest.approx(r["hpo_s"] / r["plain_s"], rel=0.01)
        assert 0 < r["hpo_test_accuracy"][0] <= 1 and 0 < r["plain_test_accuracy"][0] <= 1
    assert list(tmp_path.iterdir()) == []  # each run in its own temporary folder


@pytest.mark.slow  # sixteen short studies
def test_bench_search_compares_strategies_over_seeds(tmp_path):
    """hpo bench --search: each strategy x seed is a real study; unpruned strategies train every epoch, pruned
    ones no more; the target is the best value found less the tolerance; the picture is a PNG."""
    import yaml

    study = {"name": "strategies", "seed": 0, "data": {"name": "digits"}, "model": {"name": "digits_cnn", "width": 8},
             "budget": {"trials": 4, "epochs": 3, "retrain": {"epochs": 1}},
             "search": {"lr": {"low": 1e-4, "high": 0.3, "log": True}, "optimizer": ["adam", "sgd"]},
             "sampler": {"name": "tpe", "n_startup_trials": 2},
             "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    result = json.loads(hpo("bench", "--search", "study.yaml", "--seeds", "2", "--tolerance", "0.01",
                            "--output", "search.png", "--json", cwd=tmp_path).stdout)
    assert set(result["strategies"]) == {"study", "tpe+hyperband", "tpe", "random"}
    runs = result["runs"]
    assert len(runs) == 8 and {r["seed"] for r in runs} == {0, 1}
    best = max(r["best"] for r in runs)
    assert result["best_found"] == best and result["target"] == pytest.approx(best - 0.01)
    for run in runs:
        assert run["epochs"] == run["curve"][-1][0] and run["best"] == run["curve"][-1][1]
        if run["strategy"] in ("tpe", "random"):
            assert run["epochs"] == 4 * 3  # no pruner: every trial trains its budget
        else:
            assert run["epochs"] <= 4 * 3
        if run["epochs_to_target"] is not None:
            assert run["epochs_to_target"] <= run["epochs"] and run["best"] >= result["target"]
    import statistics

    final = statistics.median(r["best"] for r in runs if r["strategy"] == "random")
    assert result["randoms_final"] == final  # random search's quality: the median of its runs' best
    for run in runs:
        reached = run["epochs_to_randoms_final"]
        assert (reached is None) == (run["best"] < final)
        if reached is not None:
            assert reached == min(spent for spent, best in run["curve"] if best >= final)
    for summary in result["strategies"].values():
        if summary["epochs_to_randoms_final"] is not None:
            assert summary["of_randoms_epochs"] == pytest.approx(summary["epochs_to_randoms_final"] / (4 * 3))
    assert (tmp_path / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_cifar10_cpu_search_benchmark_reads_a_subset_made_by_its_script(tmp_path):
    """benchmarks/cifar10_subset.py links N images a class in the train/ and test/ layout, and the
    benchmark's study file reads that subset (hpo check; its runs are measured in docs/benchmarks.md)."""
    import subprocess
    import sys

    from helpers import REPO

    classes = ["airplane", "automobile", "bird"]
    for part in ("train", "test"):
        write_image_folder(tmp_path / "cifar10" / part, classes, 5, suffix=".jpg")
    subset = tmp_path / "cifar10-300"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "cifar10_subset.py"), str(tmp_path / "cifar10"),
                           str(subset), "--train", "3", "--test", "2"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"{3 * 3 + 3 * 2} images linked under {subset}"
    first = sorted(p.name for p in (tmp_path / "cifar10" / "train" / "bird").iterdir())[:3]
    assert sorted(p.name for p in (subset / "train" / "bird").iterdir()) == first
    assert all(p.is_symlink() for p in (subset / "test" / "bird").iterdir())
    checked = hpo("check", str(REPO / "benchmarks" / "cifar10_search_cpu.yaml"), "--set", f"data.root={subset}",
                  cwd=tmp_path)
    assert "cifar10" in checked.stdout and "simple_cnn" in checked.stdout
