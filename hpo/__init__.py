"""hpo: hyperparameter optimisation for PyTorch image classifiers.

The packages, bottom to top (each imports only those before it; ``tests/test_layers.py`` checks it), follow
one study's path: study file -> spec -> Optuna study -> trial -> training -> MLflow -> retrain -> promote.

    core     errors, registries, lazy imports, signals, masked text: the neutral ground
    stores   store URLs, the retry policy for failing stores, locks, process identity
    train    training one model: hyperparameters, optimizers, the trainer, the epoch loop, state files
    study    the Optuna study: storage, samplers, pruners, claims, retries, the attributes hpo keeps
    spec     study files, validated once into frozen dataclasses
    track    MLflow runs, optuna-dashboard notes and pictures
    search   the search loop and one trial's steps, worker processes, progress
    retrain  the best trial retrained and tested once; the seed comparison
    serve    promote, the registered pyfunc, inference from the final checkpoint
    report   hpo show and hpo report
    bench    hpo bench
    pipeline.py  what hpo run does, top to bottom
    api.py       every command's work as a function: the Python API
    cli.py       the command line: parse (arguments.py), call the API, print

``data/`` (data sets) and ``models/`` (architectures) sit beside ``train``: they import only ``hpo.core``.
"""

__version__ = "0.1.0"

import warnings

# Optuna marks heartbeats and multivariate TPE "experimental"; we use them knowingly, users need not see it.
warnings.filterwarnings("ignore", message=r".*is an experimental feature")
warnings.filterwarnings("ignore", message=r".* is experimental \(supported from v")  # e.g. set_metric_names
# hpo/study/claims.py records heartbeats itself around each trial it asks for (so workers can share a budget).
warnings.filterwarnings("ignore", message=r"Heartbeat of storage is supposed to be used with Study.optimize")
