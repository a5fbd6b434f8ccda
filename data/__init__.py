"""Data sets: a registry of loaders, each returning images as uint8 tensors.

A loader is a function decorated with ``@register_dataset("name")``. It takes
the study's ``data`` fields (other than the split fields) as keyword
arguments and returns a :class:`data.images.LabelledImages` pool, plus an
optional official test part. ``data.splits.load_splits`` turns that into the
train / validation / test splits every trial and retrain uses.

``@register_dataset("name", check=check_options)`` adds the loader's rules for
its option values, so a study file is refused when it is read, not when the
loader runs. A loader raises :class:`data.errors.DataError` naming the study
field at fault; the study file and the command line are the caller's business.

May import: hpo.core.
"""

from hpo.core.registry import Registry

DATASETS = Registry("dataset")
register_dataset = DATASETS.register
TORCHVISION = "torchvision/"  # torchvision/FashionMNIST: hpo/data/torchvision_data.py


def load_source(name: str, args: dict):
    """The data set ``name`` names: hpo's own (this registry), torchvision's (``torchvision/NAME``) or the user's
    (``module:callable``, imported from ``import_from`` first)."""
    if name.startswith(TORCHVISION):
        from hpo.data import torchvision_data
        return torchvision_data.load(name.removeprefix(TORCHVISION), **args)
    if ":" in name:
        from hpo.data import user_data
        args = dict(args)
        folder = args.pop("import_from", None)
        return user_data.load(name, [folder] if folder else [], **args)
    return DATASETS.get(name)(**args)

# Importing the modules fills the registry.
from hpo.data import cifar, digits, folder  # noqa: E402,F401
