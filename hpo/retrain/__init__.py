"""After the search: the best trial retrained to the full budget and tested once; the seed comparison.

- ``best_trial.py``  the best trial, once per budget: alone, or against the baseline over seeds
- ``retrain.py``     one retrain: train, test once on the held-out split, log with its checkpoint
- ``seeds.py``       the seed comparison: best and baseline with the same fresh seeds
- ``verdict.py``     its statistics: a Welch t interval and one sentence (no torch, no MLflow)

May import: hpo.core, hpo.stores, hpo.train, hpo.study, hpo.spec, hpo.track, hpo.search, hpo.data, hpo.models.
"""
