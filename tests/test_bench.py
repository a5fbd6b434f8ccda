"""`hpo bench` runs all four parts on CPU and reports every field (never a speed: that is for people to read)."""

from __future__ import annotations

import json
import math

from datagen import write_image_folder
from helpers import hpo


def test_bench_on_cpu_reports_every_part(tmp_path_factory, monkeypatch):
    data = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("HPO_CACHE", str(data / "cache"))
    write_image_folder(data / "jpegs", ["a", "b", "c"], 40, sizes=((12, 10),), mode="L", suffix=".jpg")
    tmp_path = tmp_path_factory.mktemp("work")
    result = hpo("bench", "--device", "cpu", "--model", "digits_cnn", "--image-size", "8", "--channels", "1",
                 "--batch-size", "32", "--steps", "3", "--packed", "2", "--study-trials", "3", "--study-epochs", "2",
                 "--folder", str(data / "jpegs"), "--json", cwd=tmp_path)
    report = json.loads(result.stdout)
    for field in ("trainer_images_per_s", "reference_images_per_s", "overhead_ratio", "ceiling_fraction",
                  "packed_speedup", "pruning_epoch_ratio", "streamed_images_per_s"):
        assert isinstance(report[field], float) and math.isfinite(report[field]) and report[field] > 0, field
    assert report["device"].startswith("CPU")
    assert report["pruning"]["none"]["epochs"] == 3 * 2  # without a pruner every trial runs every epoch
    lines = result.stderr.splitlines()
    assert [line[:2] for line in lines if line[:1].isdigit()] == ["1.", "2.", "3.", "4."]
    assert list(tmp_path.iterdir()) == [], "the bench leaves no stores behind"


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
