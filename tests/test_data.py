"""Every data set loads from data written in its real on-disk format."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from hpo.data.errors import DataError
from hpo.data.splits import load_splits

from datagen import write_cifar, write_image_folder
from helpers import hpo, write_study


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HPO_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_in_torchvisions_format(tmp_path, classes):
    write_cifar(tmp_path, classes, per_class_train=12, per_class_test=3)
    name = "cifar10" if classes == 10 else "cifar100"
    splits = load_splits(name, {"root": str(tmp_path)}, val_fraction=0.25, test_fraction=0.2, split_seed=0)
    assert len(splits.test) == 3 * classes and len(splits.train) + len(splits.val) == 12 * classes
    assert splits.train.images.dtype == torch.uint8 and splits.train.images.shape[1:] == (3, 32, 32)
    assert splits.num_classes == classes and splits.class_names[1] in ("class1", "class001")
    assert splits.mean[0] == pytest.approx(0.4914 if classes == 10 else 0.5071)  # the published statistics


def test_cifar_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"^no cifar10 under .*cifar-10-batches-py") as raised:
        load_splits("cifar10", {"root": str(tmp_path)}, 0.1, 0.2, 0)
    assert raised.value.field == "data.root"


def test_cifar10_as_image_folders(tmp_path):
    classes = ["airplane", "automobile", "bird"]
    write_image_folder(tmp_path / "train", classes, 10, suffix=".jpg")
    write_image_folder(tmp_path / "test", classes, 4, suffix=".jpg")
    splits = load_splits("cifar10", {"root": str(tmp_path)}, 0.2, 0.2, 0)
    assert splits.class_names == tuple(classes) and len(splits.test) == 12 and len(splits.val) == 6


def test_folder_one_tree_any_size_rgb(tmp_path):
    root = tmp_path / "images"  # not tmp_path: the cache folder there would be a class of its own
    write_image_folder(root, ["cats", "dogs"], 10, sizes=((40, 30), (64, 48), (50, 50)))
    splits = load_splits("folder", {"root": str(root)}, 0.25, 0.2, 0)
    assert splits.class_names == ("cats", "dogs")
    assert splits.channels == 3 and splits.image_size[0] == splits.image_size[1]  # resized to a square
    assert len(splits.train) + len(splits.val) + len(splits.test) == 20
    sized = load_splits("folder", {"root": str(root), "size": 24}, 0.25, 0.2, 0)
    assert sized.image_size == (24, 24) and sized.class_names == ("cats", "dogs")


def test_folder_grayscale_kept_or_expanded(tmp_path):
    write_image_folder(tmp_path / "train", ["a", "b", "c"], 8, sizes=((20, 20),), mode="L", suffix=".jpg")
    write_image_folder(tmp_path / "test", ["a", "b", "c"], 2, sizes=((20, 20),), mode="L", suffix=".jpg")
    gray = load_splits("folder", {"root": str(tmp_path)}, 0.25, 0.2, 0)
    assert gray.channels == 1 and gray.image_size == (20, 20) and len(gray.mean) == 1
    rgb = load_splits("folder", {"root": str(tmp_path), "channels": 3}, 0.25, 0.2, 0)
    assert rgb.channels == 3 and torch.equal(rgb.train.images[:, 0], rgb.train.images[:, 2])


def test_folder_corrupt_file_error_or_skip(tmp_path):
    write_image_folder(tmp_path, ["a", "b"], 6)
    bad = tmp_path / "a" / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"broken.png: not a readable image .*skip_bad_files") as raised:
        load_splits("folder", {"root": str(tmp_path)}, 0.25, 0.2, 0)
    assert raised.value.field is None, "the message names the file"
    with pytest.warns(UserWarning, match="skipping .*broken.png"):
        splits = load_splits("folder", {"root": str(tmp_path), "skip_bad_files": True}, 0.25, 0.2, 0)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 12


def test_folder_root_errors_name_the_field_or_the_folder(tmp_path):
    with pytest.raises(DataError, match=r"^\S*nowhere is not a folder; point it at an image folder") as raised:
        load_splits("folder", {"root": str(tmp_path / "nowhere")}, 0.25, 0.2, 0)
    assert raised.value.field == "data.root"
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"flat: not an image folder .*expected \S*flat/<class>/") as raised:
        load_splits("folder", {"root": str(tmp_path / "flat")}, 0.25, 0.2, 0)
    assert raised.value.field is None


def test_folder_decodes_once_then_reads_the_cache(tmp_path, capsys):
    write_image_folder(tmp_path / "data", ["a", "b"], 5)
    first = load_splits("folder", {"root": str(tmp_path / "data")}, 0.2, 0.2, 0)
    assert "decoding 10 images" in capsys.readouterr().err
    assert len(list((tmp_path / "cache").glob("folder-*.pt"))) == 1
    second = load_splits("folder", {"root": str(tmp_path / "data")}, 0.2, 0.2, 0)
    assert "decoding" not in capsys.readouterr().err
    assert torch.equal(first.train.images, second.train.images)
    Image.new("RGB", (32, 32)).save(tmp_path / "data" / "a" / "new.png")  # the cache follows the files
    third = load_splits("folder", {"root": str(tmp_path / "data")}, 0.2, 0.2, 0)
    assert len(third.train) + len(third.val) + len(third.test) == 11


def test_imagenet_layout(tmp_path):
    wnids = ["n01440764", "n01443537", "n01484850"]
    write_image_folder(tmp_path / "train", wnids, 8, sizes=((48, 40),), suffix=".JPEG")
    write_image_folder(tmp_path / "val", wnids, 3, sizes=((40, 56),), suffix=".JPEG")
    splits = load_splits("imagenet", {"root": str(tmp_path), "size": 32}, 0.25, 0.2, 0)
    assert splits.class_names == tuple(wnids)
    assert len(splits.test) == 9, "ImageNet's val folder is the held-out test split"
    assert splits.image_size == (32, 32) and splits.mean == (0.485, 0.456, 0.406)


def test_normalize_choices(tmp_path):
    write_image_folder(tmp_path / "images", ["a", "b"], 6)
    half = load_splits("folder", {"root": str(tmp_path / "images")}, 0.25, 0.2, 0, normalize="half")
    assert half.mean == (0.5, 0.5, 0.5) and half.std == (0.5, 0.5, 0.5)
    measured = load_splits("folder", {"root": str(tmp_path / "images")}, 0.25, 0.2, 0, normalize="measured")
    pixels = measured.train.images.double() / 255
    assert measured.mean[1] == pytest.approx(pixels[:, 1].mean().item())
    assert measured.std[1] == pytest.approx(pixels[:, 1].std().item(), rel=1e-3)


def test_hpo_run_on_an_unseen_grayscale_folder_from_another_directory(tmp_path):
    """A folder nobody here has seen (grayscale, mixed sizes, one tree), named by a relative data.root: read
    from the study file's folder whatever the current directory, recorded absolute in the stored study."""
    import optuna

    from helpers import hpo, write_study

    project = tmp_path / "project"
    write_image_folder(project / "scans", ["benign", "malignant", "normal"], 12,
                       sizes=((30, 24), (24, 30), (28, 28)), mode="L", suffix=".png")
    study = {"name": "scans", "data": {"name": "folder", "root": "../scans", "size": 16,
                                       "val_fraction": 0.25, "test_fraction": 0.25},
             "model": {"name": "digits_cnn", "width": 8},
             "budget": {"trials": 2, "epochs": 2, "retrain": {"epochs": 2}},
             "search": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}}}
    (project / "studies").mkdir()
    study_file = write_study(project / "studies", study)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = hpo("run", str(study_file), cwd=elsewhere)
    assert "(20 train / 7 val / 9 test)" in result.stdout
    assert "test_accuracy" in result.stdout
    stored = optuna.load_study(study_name="scans", storage=f"sqlite:///{elsewhere / 'hpo.db'}")
    assert stored.user_attrs["spec"]["data"]["root"] == str(project / "scans")

    assert hpo("check", "studies/study.yaml", "--set", "data.root=scans", cwd=project).returncode == 0
    checked = hpo("check", str(study_file), "--set", "data.root=scans", cwd=elsewhere, check=False)
    assert checked.returncode == 2 and len(checked.stderr.strip().splitlines()) == 1, checked.stderr
    assert f"data.root: {elsewhere / 'scans'} does not exist" in checked.stderr, checked.stderr


def bad_options_study(root, **data) -> dict:
    return {"name": "bad", "data": {"name": "folder", "root": str(root), **data},
            "model": {"name": "digits_cnn", "width": 8}, "search": {"lr": [0.01]}}


@pytest.mark.parametrize("data, field, message", [
    ({"stream": "sometimes"}, "data.stream", "must be auto, true or false, got 'sometimes'"),
    ({"stream": 1}, "data.stream", "must be auto, true or false, got 1"),
    ({"workers": -1}, "data.workers", "must be auto or a whole number >= 0 (DataLoader workers), got -1"),
    ({"workers": 2.5}, "data.workers", "must be auto or a whole number >= 0 (DataLoader workers), got 2.5"),
    ({"decode": "gpu"}, "data.decode", "must be one of auto, workers, device, got 'gpu'"),
    ({"channels": 2}, "data.channels", "must be auto, 1 or 3, got 2"),
    ({"channels": True}, "data.channels", "must be auto, 1 or 3, got True"),
    ({"size": 0}, "data.size", "must be a whole number of pixels >= 1"),
    ({"name": "imagenet", "decode": "nvjpeg"}, "data.decode", "must be one of auto, workers, device, got 'nvjpeg'"),
    ({"name": "imagenet", "stream": "yes"}, "data.stream", "must be auto, true or false, got 'yes'"),
])
def test_bad_loader_options_refused_when_the_study_file_is_read(tmp_path, data, field, message):
    """hpo check refuses them: the loader's rules are checked with the file, before any data is opened (the
    root does not even exist) or any store created."""
    work = tmp_path / "work"
    work.mkdir()
    study_file = write_study(work, bad_options_study(tmp_path / "no-such-folder", **data))
    result = hpo("check", str(study_file), cwd=work, check=False)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{study_file}: {field}: {message}" in lines[0]
    assert sorted(p.name for p in work.iterdir()) == ["study.yaml"], "nothing written"


def test_the_loader_refuses_the_same_options_before_opening_the_folder(tmp_path):
    """The same rule, called by the loader itself (a caller without a study file, e.g. hpo bench)."""
    with pytest.raises(DataError, match=r"^must be auto, true or false, got 'sometimes'$") as raised:
        load_splits("folder", {"root": str(tmp_path / "no-such-folder"), "stream": "sometimes"}, 0.25, 0.2, 0)
    assert raised.value.field == "data.stream"


def test_a_crafted_cifar_batch_runs_no_code_and_is_one_line(tmp_path):
    """A data_batch_1 whose pickle would call os.system: refused by name, and the file it would create is not."""
    import os
    import pickle

    from datagen import write_cifar

    write_cifar(tmp_path / "cifar10", 10, per_class_train=2, per_class_test=1)
    victim = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {victim}",)

    with open(tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({"data": Payload(), "labels": [0]}, f)
    study = {"name": "crafted", "data": {"name": "cifar10", "root": str(tmp_path / "cifar10")},
             "model": {"name": "simple_cnn"}, "budget": {"trials": 1, "epochs": 1},
             "search": {"lr": [0.01, 0.02]}}
    result = hpo("run", str(write_study(tmp_path, study)), "--no-tracking", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "data_batch_1 is not a CIFAR batch: refers to posix.system" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not victim.exists(), "the pickle's code ran"


def test_evaluate_from_where_the_data_is_not_says_data_root(tmp_path):
    """A checkpoint of a folder data set, evaluated on a machine where that folder is not: one line naming
    --data-root."""
    import torch

    from hpo.models import create_model

    model = create_model("digits_cnn", num_classes=2, in_channels=1, image_size=(8, 8), width=4)
    checkpoint = {"format": "hpo-checkpoint/1", "state_dict": model.state_dict(),
                  "model": {"name": "digits_cnn", "args": {"width": 4}},
                  "preprocessing": {"channels": 1, "image_size": [8, 8], "mean": [0.5], "std": [0.25]},
                  "class_names": ["a", "b"], "metrics": {"test_accuracy": 0.5},
                  "data": {"name": "folder", "args": {"root": "/nowhere/pets"}, "val_fraction": 0.2,
                           "test_fraction": 0.2, "split_seed": 0}}
    torch.save(checkpoint, tmp_path / "elsewhere.pt")
    result = hpo("evaluate", "elsewhere.pt", cwd=tmp_path, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "the checkpoint was trained on /nowhere/pets" in result.stderr and "pass --data-root DIR" in result.stderr
