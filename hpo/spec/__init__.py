"""Study files: read and validated once, at the edge, into frozen dataclasses that everything above trusts.

- ``study_file.py``  the study file: its fields, their defaults and their checks (``StudySpec``)
- ``space.py``       the ``search:`` section: which hyperparameters exist, their rules, how a trial samples them

A study file names things from the registries below it (data sets, models, optimizers and schedules,
samplers, pruners) and is checked against them when it is read.
May import: hpo.core, hpo.stores, hpo.train, hpo.study, hpo.data, hpo.models.
"""
