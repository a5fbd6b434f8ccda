from data.registry import Registry  # noqa: F401  (moved to data/; remove once hpo/optim.py imports it from there)
