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

``data/`` (data sets) and ``models/`` (architectures) install as ``hpo.data`` and ``hpo.models`` (setup.cfg's
package_dir) and sit beside ``train``: they import only ``hpo.core``.

For notebooks and scripts (nothing heavy is imported until a function is called)::

    import hpo

    result = hpo.run("studies/digits.yaml", overrides={"budget.trials": 10})
    result.best_params, result.best_value, result.test_accuracy
    promotion = hpo.promote("digits", output="digits.pt")
    classifier = hpo.load("digits.pt")
    classifier.predict(["seven.png"])

Bad input raises :class:`SpecError` (a study file's field) or :class:`UserError`, whose text is the line
the command line prints after ``error:``.
"""

__version__ = "0.1.0"

import warnings

from hpo.core.errors import SpecError, UserError


def run(study_file, overrides=None, **options):
    """Search the study, then retrain its best trial; see :func:`hpo.api.run_file` for the options."""
    from hpo.api import run_file

    return run_file(study_file, overrides, **options)


def load(checkpoint):
    """A final checkpoint with its network built; see :func:`hpo.api.load`."""
    from hpo.api import load as load_checkpoint

    return load_checkpoint(checkpoint)


def promote(study, **options):
    """Register the study's retrain and write its final checkpoint; see :func:`hpo.api.promote_study`."""
    from hpo.api import promote_study

    return promote_study(study, **options)


__all__ = ["SpecError", "UserError", "load", "promote", "run", "__version__"]

# Optuna marks heartbeats and multivariate TPE "experimental"; we use them knowingly, users need not see it.
warnings.filterwarnings("ignore", message=r".*is an experimental feature")
warnings.filterwarnings("ignore", message=r".* is experimental \(supported from v")  # e.g. set_metric_names
# hpo/study/claims.py records heartbeats itself around each trial it asks for (so workers can share a budget).
warnings.filterwarnings("ignore", message=r"Heartbeat of storage is supposed to be used with Study.optimize")
