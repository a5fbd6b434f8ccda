"""What users see of a study outside hpo: MLflow runs, optuna-dashboard notes and pictures.

- ``tracker.py``      MLflow: one experiment per study, one parent run per ``hpo run``, one nested run per
                      trial and retrain; tags, metrics, artifacts, the model registry (a new MLflow tag goes here)
- ``null_tracker.py`` the same interface with nothing behind it (``--no-tracking``)
- ``dashboard.py``    optuna-dashboard: each trial's link and curves, the study's note
- ``pictures.py``     the PNGs: learning curves, confusion matrix, per-class accuracy
- ``best_effort.py``  a picture or a note that fails costs one console line, never a trial

May import: hpo.core, hpo.stores, hpo.train, hpo.study, hpo.spec, hpo.data, hpo.models.
"""
