"""The registered model: an MLflow pyfunc that takes image files and answers class names and probabilities.

``hpo promote`` logs it next to the retrain run and registers it, so that

    mlflow.pyfunc.load_model("models:/digits@champion").predict(pandas.DataFrame({"image": [png_bytes]}))
    mlflow models serve -m models:/digits@champion --env-manager local -p 5001

classify images with the same decoding, resizing and normalisation as ``hpo predict`` (``hpo/serve/inference.py``).
Its one artifact is the retrain run's self-contained checkpoint; it carries the ``hpo`` package (``hpo.data`` and
``hpo.models`` included) as code, so it loads wherever torch, torchvision and MLflow are installed.

Input: a DataFrame with one column ``image`` holding the bytes of image files (JPEG, PNG, WebP or GIF).
Over HTTP the bytes are base64, MLflow's encoding of a binary column::

    {"dataframe_split": {"columns": ["image"], "data": [["iVBORw0KGgo..."], ["iVBORw0KGgo..."]]}}

Output: a DataFrame with a row per image: ``class`` (the most probable class name), ``probability`` (its
probability) and ``probabilities`` (every class name with its probability); the server answers
``{"predictions": [{"class": "3", "probability": 0.98, "probabilities": {"0": 0.001, ...}}, ...]}``.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pandas as pd

IMAGE_COLUMN = "image"
MODEL_NAME = "classifier"  # the LoggedModel's name (MLflow 3), as "model" is the retrain run's checkpoint folder


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """Image files in, class names and probabilities out (the module docstring has the formats)."""

    def load_context(self, context) -> None:
        from hpo.train.checkpoint import load_checkpoint
        self._use(load_checkpoint(context.artifacts["checkpoint"]))

    def _use(self, checkpoint: dict) -> None:
        from hpo.train.checkpoint import model_from_checkpoint
        from hpo.train.device import resolve_device
        self.checkpoint, self.model = checkpoint, model_from_checkpoint(checkpoint)
        self.device = resolve_device("auto")
        self.model.to(self.device)

    # The DataFrame hint says "no schema from hints" to MLflow: the logged signature has the column's type.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import torch
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        from hpo.core.errors import UserError
        from hpo.serve.inference import class_probabilities, decode_image_file

        if not isinstance(model_input, pd.DataFrame) or IMAGE_COLUMN not in model_input.columns:
            raise MlflowException(f"expected a DataFrame with a column {IMAGE_COLUMN!r} of image file bytes, got "
                                  f"{type(model_input).__name__}", error_code=INVALID_PARAMETER_VALUE)
        prep, names = self.checkpoint["preprocessing"], self.checkpoint["class_names"]
        try:  # a file that is no image is the caller's mistake: HTTP 400 with the reason, not a server error
            images = torch.stack([decode_image_file(bytes(contents), prep["channels"], prep["image_size"],
                                                    f"{IMAGE_COLUMN} of row {row}")
                                  for row, contents in enumerate(model_input[IMAGE_COLUMN])])
        except UserError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        probabilities = class_probabilities(self.model, self.checkpoint, images, self.device)
        best = probabilities.argmax(dim=1).tolist()
        rows = probabilities.tolist()
        return pd.DataFrame({"class": [names[i] for i in best],
                             "probability": [row[i] for row, i in zip(rows, best)],
                             "probabilities": [dict(zip(names, row)) for row in rows]})


def example_image(checkpoint: dict) -> bytes:
    """A mid-grey PNG of the checkpoint's channels and size: the logged model's input example."""
    import torch
    from torchvision.io import encode_png

    prep = checkpoint["preprocessing"]
    return encode_png(torch.full((prep["channels"], *prep["image_size"]), 128, dtype=torch.uint8)).numpy().tobytes()


def log_classifier(tracking_uri: str, experiment_id: str, run_id: str, checkpoint_file: Path,
                   checkpoint: dict, tags: dict[str, str] | None = None) -> str:
    """Log the pyfunc for ``checkpoint`` (loaded from ``checkpoint_file``) as a LoggedModel of the retrain run
    ``run_id`` (with ``tags``), with a signature and an input example; returns its model id
    (``models:/MODEL_ID``)."""
    import torch
    import torchvision
    from mlflow.models import infer_signature

    import hpo

    example = pd.DataFrame({IMAGE_COLUMN: [example_image(checkpoint)]})
    classifier = ImageClassifier()
    classifier._use(checkpoint)
    signature = infer_signature(example, classifier.predict(None, example))
    client = mlflow.MlflowClient(tracking_uri)
    logged = client.create_logged_model(experiment_id, name=MODEL_NAME, source_run_id=run_id,
                                        tags={"hpo.study": checkpoint["study"]["name"], **(tags or {})})
    # Listed rather than inferred: inferring them loads the model once more in a subprocess (seconds).
    requirements = [f"torch=={str(torch.__version__).split('+')[0]}",
                    f"torchvision=={str(torchvision.__version__).split('+')[0]}",
                    f"mlflow=={mlflow.__version__}", f"pandas=={pd.__version__}"]
    with _tracking_uri(tracking_uri), tempfile.TemporaryDirectory(prefix="hpo-code-") as code:
        mlflow.pyfunc.log_model(
            name=MODEL_NAME, model_id=logged.model_id, python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
            artifacts={"checkpoint": str(checkpoint_file)},
            code_paths=[str(_whole_package(Path(code)))],
            signature=signature, input_example=example, pip_requirements=requirements,
            metadata={"class_names": list(checkpoint["class_names"]), "hpo_version": hpo.__version__})
    return logged.model_id


def _whole_package(folder: Path) -> Path:
    """The ``hpo`` package, ``hpo.data`` and ``hpo.models`` inside it, copied into ``folder``: the code the
    registered model carries. (In a source checkout the two live beside ``hpo/``, as setup.cfg's package_dir
    says; in an installed one, inside it.)"""
    import shutil

    import hpo
    import hpo.data
    import hpo.models

    target = folder / "hpo"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(hpo.__file__).parent, target, ignore=skip)
    for package in (hpo.data, hpo.models):
        inside = target / package.__name__.split(".")[1]
        if not inside.exists():
            shutil.copytree(Path(package.__file__).parent, inside, ignore=skip)
    return target


@contextlib.contextmanager
def _tracking_uri(uri: str):
    """MLflow's fluent ``log_model`` writes to the process-wide tracking URI: this store's, for the while."""
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
