"""The streaming path (DataLoader workers reading files) against the device-resident path: same seed, same run."""

from __future__ import annotations

import re

import pytest
import torch

from hpo.data.batches import evaluation_batches, training_batches
from hpo.data.splits import load_splits
from hpo.data.streaming import ImageFiles

from datagen import write_image_folder
from helpers import hpo, write_study

CLASSES = ["ants", "bees", "wasps"]


@pytest.fixture()
def jpeg_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HPO_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "insects"
    write_image_folder(root / "train", CLASSES, 24, sizes=((40, 30), (36, 36), (30, 44)), suffix=".jpg")
    write_image_folder(root / "test", CLASSES, 6, sizes=((40, 30),), suffix=".jpg", seed=1)
    return root


def test_streamed_batches_equal_resident_batches(jpeg_folder):
    resident = load_splits("folder", {"root": str(jpeg_folder), "size": 24}, 0.25, 0.2, 0)
    streamed = load_splits("folder", {"root": str(jpeg_folder), "size": 24, "stream": True, "workers": 2},
                           0.25, 0.2, 0)
    assert isinstance(streamed.train, ImageFiles) and not isinstance(resident.train, ImageFiles)
    assert streamed.mean == resident.mean and streamed.std == resident.std
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(streamed, name).labels, getattr(resident, name).labels)
    for seed in (0, 1):  # two epochs' orders, from one generator each
        ours = training_batches(resident.train, 16, torch.Generator().manual_seed(seed))
        theirs = training_batches(streamed.train, 16, torch.Generator().manual_seed(seed))
        pairs = list(zip(ours, theirs, strict=True))
        assert len(pairs) == len(resident.train) // 16
        for (a, a_labels), (b, b_labels) in pairs:
            assert torch.equal(a, b) and torch.equal(a_labels, b_labels)
    both = streamed.train_and_val()
    assert len(both) == len(resident.train) + len(resident.val)


def test_decoding_on_the_device_gives_the_workers_pixels(jpeg_folder):
    """decode: device (torchvision.io.decode_jpeg; nvJPEG on a GPU, libjpeg here) against PIL in the workers."""
    options = {"root": str(jpeg_folder), "size": 24, "stream": True}
    in_workers = load_splits("folder", {**options, "workers": 1, "decode": "workers"}, 0.25, 0.2, 0)
    on_device = load_splits("folder", {**options, "workers": 1, "decode": "device"}, 0.25, 0.2, 0)
    a = torch.cat([images for images, _ in evaluation_batches(in_workers.test, 5)]).float()
    b = torch.cat([images for images, _ in evaluation_batches(on_device.test, 5)]).float()
    assert a.shape == b.shape == (18, 3, 24, 24)
    assert (a - b).abs().mean() < 1.0  # decoders may round differently; never by more than a level on average


def study_on(root, **data) -> dict:
    return {"name": "insects", "seed": 3,
            "data": {"name": "folder", "root": str(root), "size": 24, "val_fraction": 0.25, **data},
            "model": {"name": "digits_cnn", "width": 8},
            "budget": {"trials": 3, "epochs": 2, "retrain": {"epochs": 2}},
            "search": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}, "batch_size": [8, 16],
                       "crop_padding": [0, 2], "hflip": [0.0, 0.5], "jitter": {"low": 0.0, "high": 0.5}},
            "pruner": "none"}


def trial_values(directory) -> list[float]:
    import optuna

    study = optuna.load_study(study_name="insects", storage=f"sqlite:///{directory / 'hpo.db'}")
    return [t.value for t in study.trials]


@pytest.mark.slow  # two studies, streamed by DataLoader workers
def test_hpo_run_streamed_matches_resident(jpeg_folder, tmp_path):
    """The same study, seed and augmentations through both paths: the same trials and the same test result."""
    results = {}
    for label, data in (("resident", {"stream": False}), ("streamed", {"stream": True, "workers": 2})):
        work = tmp_path / label
        work.mkdir()
        run = hpo("run", str(write_study(work, study_on(jpeg_folder, **data))), cwd=work)
        test_accuracy = re.search(r"test_accuracy (\S+) on", run.stdout).group(1)
        results[label] = (trial_values(work), float(test_accuracy))
    assert "streaming 90 images from disk through 2 DataLoader workers" in run.stderr
    (resident_values, resident_test), (streamed_values, streamed_test) = results["resident"], results["streamed"]
    assert len(resident_values) == 3
    assert streamed_values == pytest.approx(resident_values, abs=1e-6)
    assert streamed_test == resident_test


@pytest.mark.parametrize("field, value, message", [
    ("stream", "sometimes", "data.stream: must be auto, true or false, got 'sometimes'"),
    ("workers", -1, "data.workers: must be auto or a whole number >= 0"),
    ("decode", "gpu", "data.decode: must be one of auto, workers, device, got 'gpu'"),
])
def test_bad_streaming_options(jpeg_folder, tmp_path, field, value, message):
    study_file = write_study(tmp_path, study_on(jpeg_folder, **{field: value}))
    result = hpo("run", str(study_file), cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert message in lines[-1] and str(study_file) in lines[-1]
    assert len(lines) == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["insects", "study.yaml"], "no store written"


@pytest.mark.parametrize("decode", ["workers", "device"])
def test_a_file_that_does_not_decode_is_named(jpeg_folder, decode):
    """A truncated JPEG passes the header scan and fails in a DataLoader worker (or on the device): the error
    names the file and what to do, not the worker's traceback."""
    from hpo.data.errors import DataError

    broken = sorted((jpeg_folder / "test" / "ants").iterdir())[0]
    whole = broken.read_bytes()
    broken.write_bytes(whole[:len(whole) * 3 // 4])  # the header is intact, the scan lines are not
    splits = load_splits("folder", {"root": str(jpeg_folder), "size": 24, "stream": True, "workers": 1,
                                    "decode": decode}, 0.25, 0.2, 0)
    with pytest.raises(DataError) as raised:
        list(evaluation_batches(splits.test, 8))
    assert raised.value.message.startswith(f"{broken}: cannot be decoded"), raised.value.message
    assert "Traceback" not in raised.value.message and len(raised.value.message.splitlines()) == 1
    assert raised.value.field is None
