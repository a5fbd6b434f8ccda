"""hpo: hyperparameter optimisation for PyTorch image classifiers.

The data path, one module per step (``hpo.pipeline`` walks it for ``hpo run``):
study file -> ``hpo.spec`` -> ``hpo.study`` (Optuna) -> ``hpo.search`` -> ``hpo.space`` (trial params)
-> ``hpo.trainer`` -> ``hpo.tracking`` (MLflow) -> ``hpo.retrain`` -> ``hpo.promote`` -> ``hpo.checkpoint``.
"""

__version__ = "0.1.0"

import warnings

# Optuna marks heartbeats and multivariate TPE "experimental"; we use them knowingly, users need not see it.
warnings.filterwarnings("ignore", message=r".*is an experimental feature")
warnings.filterwarnings("ignore", message=r".* is experimental \(supported from v")  # e.g. set_metric_names
# hpo.study records heartbeats itself around each trial it asks for (so workers can share a budget).
warnings.filterwarnings("ignore", message=r"Heartbeat of storage is supposed to be used with Study.optimize")
