"""Data sets: a registry of loaders, each returning images as uint8 tensors.

A loader is a function decorated with ``@register_dataset("name")``. It takes
the study's ``data`` fields (other than the split fields) as keyword
arguments and returns a :class:`data.images.LabelledImages` pool, plus an
optional official test part. ``data.splits.load_splits`` turns that into the
train / validation / test splits every trial and retrain uses.
"""

from hpo.registry import Registry

DATASETS = Registry("dataset")
register_dataset = DATASETS.register

# Importing the modules fills the registry.
from data import cifar, digits, folder  # noqa: E402,F401
