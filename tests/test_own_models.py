"""Tuning the user's own network: a module of theirs (``mynets:TinyNet``) and torchvision's models by name,
through the real CLI on digits; the promoted checkpoint and the registered model answer without the user's
module; a checkpoint that names a module is refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import hpo, write_study
from hpo.cli import main

MYNETS = '''
import torch.nn as nn


class TinyNet(nn.Module):
    """A conv, a pool and a head: the user's own network."""

    def __init__(self, num_classes, in_channels, width: int = 8, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                  nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width, num_classes))

    def forward(self, x):
        return self.body(x)


class ForLargerImages(nn.Module):
    """A head sized for 32x32 images: it cannot take digits' 8x8."""

    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 32 * 32, num_classes))

    def forward(self, x):
        return self.head(x)


def wide(num_classes: int, depth: int, width: int = 16):
    layers = [nn.Flatten()]
    for _ in range(depth):
        layers += [nn.LazyLinear(width), nn.ReLU()]
    return nn.Sequential(*layers, nn.LazyLinear(num_classes))
'''

OWN_STUDY = {"name": "own", "seed": 1, "data": "digits", "model": {"name": "mynets:TinyNet", "width": 6},
             "budget": {"trials": 2, "epochs": 2, "retrain": {"epochs": 2}},
             "search": {"lr": {"low": 3e-3, "high": 3e-2, "log": True}, "optimizer": "adam"}}


def digit_pngs(folder, count=4) -> list[str]:
    from PIL import Image
    from sklearn.datasets import load_digits

    images = load_digits().images
    files = []
    for i in range(count):
        path = folder / f"digit{i}.png"
        Image.fromarray((images[i] * 255 / 16).round().astype(np.uint8)).save(path)
        files.append(str(path))
    return files


# The model searched among three sources; one enqueued recipe each, the user's TinyNet the only one with a
# learning rate that learns in two epochs, so that it is the best trial and the one promoted.
SEARCHED_STUDY = dict(
    OWN_STUDY,
    model={"name": ["digits_cnn", "torchvision/mobilenet_v3_small", "mynets:TinyNet"], "width": [6, 8],
           "dropout": {"low": 0.0, "high": 0.3}},
    budget={"trials": 3, "epochs": 2, "retrain": {"epochs": 2}},
    search={"lr": {"low": 1e-5, "high": 3e-2, "log": True}, "optimizer": "adam"},
    enqueue=[{"lr": 0.03, "model": "mynets:TinyNet", "model.width": 8, "model.dropout": 0.0},
             {"lr": 1e-5, "model": "torchvision/mobilenet_v3_small", "model.dropout": 0.3},
             {"lr": 1e-5, "model": "digits_cnn", "model.width": 6, "model.dropout": 0.3}])


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """The searched study run, its best trial (the user's TinyNet) promoted and predicted while mynets.py is
    there."""
    work = tmp_path_factory.mktemp("own")
    code = work / "code"
    code.mkdir()
    (code / "mynets.py").write_text(MYNETS)
    study = write_study(code, SEARCHED_STUDY)  # mynets.py beside the study file: looked for there first
    run = hpo("run", str(study), cwd=work)
    checkpoint = work / "own.pt"
    hpo("promote", "own", "--output", str(checkpoint), cwd=work)
    files = digit_pngs(work)
    predicted = [json.loads(line) for line in hpo("predict", str(checkpoint), *files, "--json", cwd=work).stdout.splitlines()]
    return {"dir": work, "code": code, "run": run, "checkpoint": checkpoint, "files": files, "predicted": predicted}


def test_the_users_module_is_tuned_and_recorded(own):
    import optuna
    from mlflow.tracking import MlflowClient

    study = optuna.load_study(study_name="own", storage=f"sqlite:///{own['dir']}/hpo.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert [t.params["model"] for t in study.trials] == ["mynets:TinyNet", "torchvision/mobilenet_v3_small",
                                                         "digits_cnn"]
    assert "model.width" not in study.trials[1].params  # mobilenet takes no width: not sampled for it
    assert study.best_trial.number == 0
    client = MlflowClient(f"sqlite:///{own['dir']}/mlflow.db")
    experiment = client.get_experiment_by_name("own").experiment_id
    trial_runs = client.search_runs([experiment], "tags.`hpo.role` = 'trial'", order_by=["attributes.start_time ASC"])
    assert [r.data.params["model"] for r in trial_runs] == [t.params["model"] for t in study.trials]
    retrain = client.search_runs([experiment], "tags.`hpo.role` = 'retrain'")[0]
    assert retrain.data.params["model"] == "mynets:TinyNet" and retrain.data.params["model.width"] == "8"
    checkpoint = torch.load(own["checkpoint"], weights_only=True)  # a plain client loads it, no code runs
    assert checkpoint["model"]["name"] == "mynets:TinyNet" and checkpoint["model"]["args"]["width"] == 8
    assert checkpoint["exported"]["kind"] == "torch.export"
    assert retrain.data.metrics["test_accuracy"] == pytest.approx(checkpoint["metrics"]["test_accuracy"])


def test_a_stored_study_never_makes_hpo_import_the_users_module(own):
    refused = hpo("retrain", "own", cwd=own["dir"], check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "hpo retrain: error: study 'own' trains code of the user's (mynets:TinyNet), which hpo imports only from "
        "a study file; run hpo retrain STUDY_FILE"), refused.stderr
    report = hpo("report", "own", cwd=own["dir"])  # reads the stored spec without importing it
    assert report.returncode == 0


@pytest.mark.slow  # several hpo commands
def test_the_checkpoint_and_the_registered_model_answer_without_the_users_module(own, tmp_path):
    shutil.rmtree(own["code"])  # mynets.py is gone: only the exported network is left
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = [json.loads(line) for line in
             hpo("predict", str(own["checkpoint"]), *own["files"], "--json", cwd=elsewhere).stdout.splitlines()]
    assert [p["class"] for p in again] == [p["class"] for p in own["predicted"]]
    assert [p["probability"] for p in again] == pytest.approx([p["probability"] for p in own["predicted"]], abs=1e-6)
    evaluated = hpo("evaluate", str(own["checkpoint"]), "--json", cwd=elsewhere)
    assert json.loads(evaluated.stdout)["accuracy"] > 0

    script = ("import json, sys, mlflow, pandas as pd\n"
              "model = mlflow.pyfunc.load_model('models:/own@champion')\n"
              "frame = pd.DataFrame({'image': [open(f, 'rb').read() for f in sys.argv[1:]]})\n"
              "print(json.dumps(list(model.predict(frame)['class'])))\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{own['dir']}/mlflow.db"}
    served = subprocess.run([sys.executable, "-c", script, *own["files"]], cwd=own["dir"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout.splitlines()[-1]) == [p["class"] for p in own["predicted"]]


@pytest.mark.slow  # mlflow models serve
def test_mlflow_models_serve_answers_for_the_users_model_without_its_module(own, tmp_path):
    import base64

    from helpers import mlflow_models_serve
    from test_pyfunc import post

    shutil.rmtree(own["code"], ignore_errors=True)  # mynets.py is gone: only the exported network is left
    with mlflow_models_serve("models:/own@champion", own["dir"], tmp_path / "serve.log", timeout=180) as port:
        images = [[base64.b64encode(open(f, "rb").read()).decode()] for f in own["files"]]
        status, answer = post(port, {"dataframe_split": {"columns": ["image"], "data": images}})
        assert status == 200, answer
        assert [p["class"] for p in answer["predictions"]] == [p["class"] for p in own["predicted"]]


def test_a_checkpoint_naming_a_module_is_refused_without_importing_it(own, tmp_path, capsys):
    checkpoint = torch.load(own["checkpoint"], weights_only=True)
    crafted = dict(checkpoint, model={"name": "os:system", "args": {}})
    del crafted["exported"]
    torch.save(crafted, tmp_path / "crafted.pt")
    assert main(["evaluate", str(tmp_path / "crafted.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'os:system' names a module, and hpo never imports code" in err


def test_a_program_that_calls_more_than_aten_operators_is_refused_before_it_loads(own, tmp_path, capsys):
    """torch.export.load would run what a crafted graph names (torch.load here): the archive is read first."""
    import io
    import zipfile

    checkpoint = torch.load(own["checkpoint"], weights_only=True)
    original = zipfile.ZipFile(io.BytesIO(checkpoint["exported"]["program"].numpy().tobytes()))
    crafted = io.BytesIO()
    with zipfile.ZipFile(crafted, "w") as out:
        for name in original.namelist():
            data = original.read(name)
            if name.endswith("models/model.json"):
                assert b"torch.ops.aten.relu.default" in data
                data = data.replace(b"torch.ops.aten.relu.default", b"torch.load")
            out.writestr(name, data)
    checkpoint["exported"]["program"] = torch.frombuffer(bytearray(crafted.getvalue()), dtype=torch.uint8)
    torch.save(checkpoint, tmp_path / "crafted.pt")
    assert main(["predict", str(tmp_path / "crafted.pt"), own["files"][0]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused: the exported program calls 'torch.load'" in err, err


def test_a_network_torch_export_cannot_trace_is_refused_before_any_trial(tmp_path):
    (tmp_path / "mynets.py").write_text(MYNETS + """

class Branchy(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.export cannot trace it
            return self.head(x.flatten(1))
        return -self.head(x.flatten(1))
""")
    study = write_study(tmp_path, dict(OWN_STUDY, model={"name": "mynets:Branchy"}))
    result = hpo("run", str(study), cwd=tmp_path, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "model: mynets:Branchy cannot be built for 1x8x8 images: torch.export cannot trace it" in result.stderr
    assert _hashes(tmp_path) == {}


@pytest.mark.slow  # several hpo commands
def test_a_torchvision_model_by_name_is_tuned_on_grey_digits(tmp_path):
    study = write_study(tmp_path, {
        "name": "tv", "seed": 2, "data": "digits",
        "model": {"name": "torchvision/mobilenet_v3_small", "dropout": 0.1},
        "budget": {"trials": 1, "epochs": 1, "retrain": {"epochs": 1}},
        "search": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}}})
    hpo("run", str(study), "--no-tracking", cwd=tmp_path)
    import optuna

    trial = optuna.load_study(study_name="tv", storage=f"sqlite:///{tmp_path}/hpo.db").trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE


def _hashes(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.db"))}


BAD_MODELS = {
    "an import path that does not exist": ({"name": "nosuch:Net"}, "model.name: no module 'nosuch' in"),
    "a module that raises on import": ({"name": "broken:Net"}, "model.name: importing broken failed: "
                                                               "RuntimeError: no GPU here (broken.py:3)"),
    "a missing callable": ({"name": "mynets:Nope"}, "model.name: module mynets"),
    "an argument the signature refuses": ({"name": "mynets:TinyNet", "depth": 3},
                                          "model.depth: unknown argument; mynets:TinyNet takes width, dropout"),
    "a required argument missing": ({"name": "mynets:wide"}, "model.depth: is required by mynets:wide"),
    "an argument of another type": ({"name": "mynets:TinyNet", "width": "wide"}, "model.width: must be an integer"),
    "a torchvision name that is no classifier": ({"name": "torchvision/fasterrcnn_resnet50_fpn"},
                                                 "model.name: torchvision/fasterrcnn_resnet50_fpn is not one of torchvision's classification models"),
    "a torchvision name mistyped": ({"name": "torchvision/resnet-18"}, "model.name: torchvision/resnet-18 is not one "
                                    "of torchvision's classification models; did you mean torchvision/resnet18?"),
    "a torchvision argument it does not take": ({"name": "torchvision/resnet18", "width": 3},
                                                "torchvision/resnet18 does not take width"),
}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_a_bad_model_is_one_line_before_any_store(case, tmp_path):
    (tmp_path / "mynets.py").write_text(MYNETS)
    (tmp_path / "broken.py").write_text("import os\n\nraise RuntimeError('no GPU here')\n")
    model, message = BAD_MODELS[case]
    study = write_study(tmp_path, dict(OWN_STUDY, model=model))
    for command in ("check", "run") if case == next(iter(BAD_MODELS)) else ("check",):  # run reads it alike
        result = hpo(command, str(study), cwd=tmp_path, check=False)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert _hashes(tmp_path) == {}  # no store was created


def test_an_image_size_the_architecture_cannot_take_names_the_smallest(tmp_path):
    study = write_study(tmp_path, dict(OWN_STUDY, model={"name": "torchvision/alexnet"}))
    result = hpo("run", str(study), cwd=tmp_path, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "torchvision/alexnet cannot take 8x8 images; the smallest square size it takes is 63x63" in result.stderr
    assert _hashes(tmp_path) == {}


def test_a_users_model_that_rejects_the_image_size_says_so_before_any_store(tmp_path):
    (tmp_path / "mynets.py").write_text(MYNETS)
    study = write_study(tmp_path, dict(OWN_STUDY, model={"name": "mynets:ForLargerImages"}))
    result = hpo("run", str(study), cwd=tmp_path, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert ("model: mynets:ForLargerImages cannot be built for 1x8x8 images: its forward pass on them raised "
            "RuntimeError: mat1 and mat2 shapes cannot be multiplied") in result.stderr
    assert _hashes(tmp_path) == {}


def test_timm_missing_is_one_line_saying_how_to_install(tmp_path):
    study = write_study(tmp_path, dict(OWN_STUDY, model={"name": "timm/resnet18d"}))
    script = "import sys; sys.modules['timm'] = None\nfrom hpo.cli import main\nsys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", script, "check", str(study)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "model.name: timm models need the timm package, which is not installed; pip install -e \".[timm]\"" \
        in result.stderr


@pytest.mark.slow  # several hpo commands
def test_a_timm_model_by_name_is_tuned_with_the_extra_installed(tmp_path):
    pytest.importorskip("timm")
    study = write_study(tmp_path, {
        "name": "timmy", "seed": 2, "data": "digits", "model": {"name": "timm/mobilenetv3_small_050", "drop_rate": 0.1},
        "budget": {"trials": 1, "epochs": 1, "retrain": {"epochs": 1}},
        "search": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}}})
    hpo("run", str(study), "--no-tracking", cwd=tmp_path)
    import optuna

    trial = optuna.load_study(study_name="timmy", storage=f"sqlite:///{tmp_path}/hpo.db").trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    refused = hpo("check", str(study), "--set", "model.name=timm/nonesuch", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "model.name: timm/nonesuch is not one of timm's models" in refused.stderr


def write_fashion_mnist(root, train: int = 120, test: int = 40) -> None:
    """FashionMNIST's raw idx files, as torchvision finds them under ROOT/FashionMNIST/raw/ (digits, resized to
    28x28, stand in for the clothes)."""
    import struct

    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images[:train + test]).mul(255 / 16).round().to(torch.uint8)
    images = torch.nn.functional.interpolate(images[:, None].float(), size=(28, 28)).round().to(torch.uint8)[:, 0]
    labels = torch.from_numpy(digits.target[:train + test]).to(torch.uint8)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, part in (("train", slice(0, train)), ("t10k", slice(train, train + test))):
        chosen = images[part]
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, len(chosen), 28, 28)
                                                          + chosen.numpy().tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, len(chosen))
                                                          + labels[part].numpy().tobytes())


def write_dtd(root, per_class: int = 6) -> None:
    """DTD's files as torchvision finds them: ROOT/dtd/dtd/images/<class>/<name>.jpg and the labels/ lists of
    partition 1. Digits of several sizes stand in for the textures."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = root / "dtd" / "dtd"
    lists = {"train": [], "val": [], "test": []}
    for label in range(3):
        (folder / "images" / f"texture{label}").mkdir(parents=True)
        for i, index in enumerate(np.flatnonzero(digits.target == label)[:per_class]):
            pixels = (digits.images[index] * 255 / 16).astype(np.uint8)
            side = 24 + 8 * (i % 3)  # 24, 32, 40 pixels: images of several sizes
            Image.fromarray(pixels).resize((side + 4 * (i % 2), side)).save(
                folder / "images" / f"texture{label}" / f"{i}.jpg", quality=95)
            lists[("train", "test", "val")[i % 3] if i >= 3 else "train"].append(f"texture{label}/{i}.jpg")
    (folder / "labels").mkdir()
    for part, names in lists.items():
        (folder / "labels" / f"{part}1.txt").write_text("".join(n + "\n" for n in names))


def test_a_torchvision_data_set_of_many_image_sizes_is_resized_to_data_size(tmp_path):
    from hpo.data import load_source

    write_dtd(tmp_path)
    source = load_source("torchvision/DTD", {"root": str(tmp_path), "size": 16})
    assert source.pool.images.shape == (3 * 4, 3, 16, 16) and source.test.images.shape == (3 * 1, 3, 16, 16)
    assert source.class_names == ("texture0", "texture1", "texture2")
    assert sorted(source.pool.labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    # the digit is still there: the centre of a resized "1" is brighter than its corners
    assert source.pool.images.float().mean() > 10
    study = write_study(tmp_path, dict(OWN_STUDY, name="dtd", data={"name": "torchvision/DTD", "root": "."},
                                      model={"name": "digits_cnn", "width": 4}),
                        name="dtd.yaml")
    refused = hpo("check", str(study), cwd=tmp_path, check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "data.size: torchvision/DTD's images differ in size: set size" in refused.stderr
    refused = hpo("check", str(study), "--set", "data.name=torchvision/Dtd", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "data.name: torchvision/Dtd is not one of the data sets hpo loads by name; " \
        "did you mean torchvision/DTD?" in refused.stderr, refused.stderr
    refused = hpo("check", str(study), "--set", "data.size=16", "--set", "data.partition=11", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "data.partition: must be one of 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, got 11" \
        in refused.stderr, refused.stderr
    refused = hpo("check", str(study), "--set", "data.name=torchvision/EMNIST", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "data.split: torchvision/EMNIST needs split: one of byclass" in refused.stderr
    refused = hpo("check", str(study), "--set", "data.name=torchvision/MNIST", "--set", "data.size=16",
                  cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "data.size: torchvision/MNIST's images are all one size" in refused.stderr


MYDATA = '''
import torch
from sklearn.datasets import load_digits


def make_splits(count: int = 300):
    """The user's own data: (images, labels) tensors for train and a Dataset of (tensor, label) for test."""
    digits = load_digits()
    images = torch.from_numpy(digits.images[:count]).float().div(16).unsqueeze(1)  # floats in [0, 1]
    labels = torch.from_numpy(digits.target[:count])
    test = [(images[i], int(labels[i])) for i in range(count - 60, count)]
    return {"train": (images[:count - 60], labels[:count - 60]), "test": test,
            "classes": [f"digit {i}" for i in range(10)]}
'''


class _ManyImages(torch.utils.data.Dataset):
    """More items than _decoded decodes in this process, so worker processes decode them; item 2050 is corrupt
    when ``corrupt``."""

    def __init__(self, corrupt: bool):
        self.corrupt = corrupt

    def __len__(self):
        return 2100

    def __getitem__(self, index):
        if self.corrupt and index == 2050:
            raise ValueError("cannot identify image file 2050.jpg")
        return torch.full((3, 4, 4), index % 250, dtype=torch.uint8), index % 7


def test_a_sized_set_is_decoded_by_workers_and_a_corrupt_image_gives_its_own_error():
    from hpo.data.torchvision_data import _decoded

    images, labels = _decoded(_ManyImages(corrupt=False))
    assert images.shape == (2100, 3, 4, 4) and int(images[2099, 0, 0, 0]) == 2099 % 250
    assert labels.tolist() == [i % 7 for i in range(2100)]
    with pytest.raises(ValueError) as raised:
        _decoded(_ManyImages(corrupt=True))
    assert str(raised.value) == "cannot identify image file 2050.jpg"  # not DataLoader's worker traceback


BAD_DATA = '''
import torch


def raises():
    raise FileNotFoundError("no files in /data")


def no_train():
    return {"val": (torch.zeros(4, 1, 8, 8), torch.zeros(4))}


class Broken(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return {"image": index}["picture"]


def broken_dataset():
    return {"train": Broken()}


def negative_labels():
    return {"train": (torch.zeros(4, 1, 8, 8), torch.tensor([-1, 0, 1, 2]))}
'''


def test_a_users_data_callable_that_fails_is_one_line_naming_where(tmp_path):
    from hpo.data.errors import DataError
    from hpo.data.user_data import load

    (tmp_path / "baddata.py").write_text(BAD_DATA)
    expected = {"raises": "baddata:raises raised FileNotFoundError: no files in /data (baddata.py:6)",
                "no_train": "baddata:no_train: returned a dict without 'train'; it must return a dict with train",
                "broken_dataset": "baddata:broken_dataset: reading what it returned raised KeyError: 'picture' "
                                  "(baddata.py:18)",
                "negative_labels": "baddata:negative_labels: labels must be class indices 0, 1, ..., got -1"}
    for name, message in expected.items():
        with pytest.raises(DataError) as raised:
            load(f"baddata:{name}", [tmp_path])
        assert raised.value.field == "data.name" and message in raised.value.message, raised.value.message
        assert "\n" not in raised.value.message


@pytest.mark.slow  # several hpo commands
def test_a_torchvision_data_set_by_name_and_a_users_data_callable_train(tmp_path):
    import optuna

    write_fashion_mnist(tmp_path / "files")
    write_dtd(tmp_path / "files")
    (tmp_path / "mydata.py").write_text(MYDATA)
    for name, data in (("fashion", {"name": "torchvision/FashionMNIST", "root": "files"}),
                       ("textures", {"name": "torchvision/DTD", "root": "files", "size": 12}),
                       ("mine", {"name": "mydata:make_splits", "count": 250})):
        study = write_study(tmp_path, dict(OWN_STUDY, name=name, data=data, model={"name": "digits_cnn", "width": 4},
                                           budget={"trials": 1, "epochs": 1, "retrain": {"epochs": 1}}),
                            name=f"{name}.yaml")
        run = hpo("run", str(study), "--no-tracking", cwd=tmp_path)
        counts = {"fashion": "(96 train / 24 val / 40 test)", "textures": "(9 train / 3 val / 3 test)",
                  "mine": "(152 train / 38 val / 60 test)"}[name]
        assert counts in run.stdout, run.stdout
        trial = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/hpo.db").trials[0]
        assert trial.state == optuna.trial.TrialState.COMPLETE
    refused = hpo("check", str(tmp_path / "mine.yaml"), "--set", "data.size=3", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "data.size: unknown argument; mydata:make_splits takes count" in refused.stderr
    refused = hpo("check", str(tmp_path / "fashion.yaml"), "--set", "data.name=torchvision/Places365",
                  cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "data.name: torchvision/Places365 is not one of" in refused.stderr
