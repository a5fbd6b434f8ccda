"""The file MLflow runs to rebuild the registered model (MLflow's "models from code"): nothing is pickled,
just as the checkpoint itself loads with ``weights_only=True``."""

import mlflow

from hpo.serve.pyfunc import ImageClassifier

mlflow.models.set_model(ImageClassifier())
