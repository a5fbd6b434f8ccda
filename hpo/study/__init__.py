"""The Optuna study: its storage, its sampler and pruner, claiming trials, retrying dead ones, and the record
hpo keeps in it. A new sampler or pruner is one registry entry in ``samplers.py`` or ``pruners.py``.

- ``storage.py``   the Optuna storage (SQLite in WAL mode, PostgreSQL) and opening a study in it
- ``samplers.py``  Optuna samplers by name (a registry); ``sampling.py``: each trial's sampler seeded afresh;
                   ``grid.py``: the grid sampler, whose end the search sees
- ``pruners.py``   Optuna pruners by name (a registry)
- ``claims.py``    claiming trials under a lock, so processes sharing a study finish exactly its budget
- ``retries.py``   trials whose process died, retried from their last epoch
- ``record.py``    every attribute hpo keeps on a study and its trials: the one place their keys are spelled
- ``objectives.py`` one objective or several (the metric, then the network's costs): the best trial, the
                   Pareto front, ``--trial N``, measuring the costs
- ``warm_start.py`` a new study begun from an older one's best trials; ``history.py``: the older study's
                   trials as the sampler sees them

The study file's spec is handed in as a value; this package never imports ``hpo.spec``.
May import: hpo.core, hpo.stores, hpo.train.
"""
