"""Using the result: the promoted model in MLflow's registry, the final checkpoint, inference.

- ``promote.py``       register a retrain run in the Model Registry and export the final checkpoint
- ``pyfunc.py``        the registered model: an MLflow pyfunc, image files in, class names out
- ``pyfunc_entry.py``  the file MLflow runs to rebuild it ("models from code": nothing pickled)
- ``inference.py``     scoring a checkpoint on its test split, classifying image files

May import: hpo.core, hpo.stores, hpo.train, hpo.study, hpo.spec, hpo.track, hpo.retrain, hpo.data, hpo.models.
"""
