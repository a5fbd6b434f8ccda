"""The final checkpoint: one self-contained file that ``hpo evaluate`` and ``hpo predict`` load.

It holds only tensors, strings, numbers, lists and dicts, so it loads with
``torch.load(path, weights_only=True)`` (no pickled code runs)::

    format          "hpo-checkpoint/1"
    state_dict      the model's weights (CPU tensors)
    model           {"name", "args"}: rebuilt through the model registry (hpo's, torchvision's or timm's)
    exported        {"kind", "program"}: a model of the user's own (module:callable) as a torch.export program
                    (hpo/train/export.py); its module is never imported from a checkpoint
    preprocessing   {"channels", "image_size", "mean", "std"}: uint8 image -> /255 -> (x - mean) / std
    class_names     list of class names, index = label
    data            {"name", "args", "val_fraction", "test_fraction", "split_seed", "normalize"}: its test split
    hyperparams     the trial's hyperparameters
    metrics         {"test_accuracy", "test_loss", "n_test_images"}
    study           {"name", "trial", "seed", "epochs"}
    versions        {"hpo", "torch", "torchvision"}
    registry        {"name", "version", "alias", "run_id", "model_id"} (added by ``hpo promote``)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import hpo
from hpo.core.errors import UserError
from hpo.models import UnknownModel, create_model, source_of
from hpo.train.export import UnsafeProgram

FORMAT = "hpo-checkpoint/1"


def make_checkpoint(model: nn.Module, *, spec, splits, hyperparams: dict, trial_number: int, seed: int,
                    epochs: int, metrics: dict[str, float]) -> dict[str, Any]:
    import torchvision
    exported = {}
    if source_of(spec.model.name) == "user":
        from hpo.train.export import export_network
        exported = {"exported": export_network(model, splits.channels, tuple(splits.image_size))}
    return {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        # without "pretrained": these weights replace the file the training started from
        "model": {"name": spec.model.name, "args": {k: v for k, v in spec.model.args.items() if k != "pretrained"}},
        "preprocessing": {"channels": splits.channels, "image_size": list(splits.image_size),
                          "mean": list(splits.mean), "std": list(splits.std)},
        "class_names": list(splits.class_names),
        "data": {"name": spec.data.name, "args": dict(spec.data.args), "val_fraction": spec.data.val_fraction,
                 "test_fraction": spec.data.test_fraction, "split_seed": spec.data.split_seed,
                 "normalize": spec.data.normalize},
        "hyperparams": dict(hyperparams),
        "metrics": dict(metrics),
        "study": {"name": spec.name, "trial": trial_number, "seed": seed, "epochs": epochs},
        # str(): torch.__version__ is a TorchVersion, which weights_only loading refuses.
        "versions": {"hpo": hpo.__version__, "torch": str(torch.__version__),
                     "torchvision": str(torchvision.__version__)},
        **exported,
    }


def save_checkpoint(checkpoint: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path``, checked field by field and with its model built once, so that a file that
    is not one (or a damaged one) is a one-line error here rather than a traceback later."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a file that is not a checkpoint
        raise UserError(f"{path}: not a loadable hpo checkpoint ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UserError(f"{path}: not an hpo checkpoint (expected format {FORMAT!r}); "
                        f"make one with `hpo promote STUDY`")
    problem = _first_problem(checkpoint)
    if problem:
        raise UserError(f"{path}: a damaged hpo checkpoint: {problem}; export it again with `hpo promote STUDY`")
    try:
        model_from_checkpoint(checkpoint)
    except UnsafeProgram as err:  # a user's network whose program holds more than an exported network should
        raise UserError(f"{path}: refused: {err}; hpo loads only programs it could have written") from None
    except UnknownModel as err:  # a source that is not installed here (timm): the file is fine
        raise UserError(f"{path}: model {checkpoint['model']['name']!r}: {err}") from None
    except Exception as err:  # a file's arguments and weights the model cannot take, whatever the model raises
        raise UserError(f"{path}: its weights do not fit model {checkpoint['model']['name']!r} "
                        f"({str(err).splitlines()[0][:200]}); export it again with `hpo promote STUDY`") from None
    return checkpoint


def _first_problem(checkpoint: dict) -> str | None:
    """What is missing or malformed in a checkpoint's fields (the table at the top), or None."""
    def has(value, kind) -> bool:
        return isinstance(value, kind) and not isinstance(value, bool)

    def numbers(values, count) -> bool:  # finite numbers, one per channel (a tensor here would be ambiguous)
        return has(values, list) and len(values) == count and all(has(v, (int, float)) and math.isfinite(v)
                                                                  for v in values)

    model, prep, data = checkpoint.get("model"), checkpoint.get("preprocessing"), checkpoint.get("data")
    checks = [
        ("state_dict", has(checkpoint.get("state_dict"), dict)),
        ("model", has(model, dict) and has(model.get("name"), str) and has(model.get("args"), dict)),
        ("preprocessing", has(prep, dict) and has(prep.get("channels"), int) and prep["channels"] in (1, 3)
         and has(prep.get("image_size"), list) and len(prep["image_size"]) == 2
         and all(has(v, int) and v > 0 for v in prep["image_size"])
         and all(numbers(prep.get(k), prep["channels"]) for k in ("mean", "std"))),
        ("class_names", has(checkpoint.get("class_names"), list) and len(checkpoint["class_names"]) >= 2
         and all(has(c, str) for c in checkpoint["class_names"])),
        ("data", has(data, dict) and has(data.get("name"), str) and has(data.get("args"), dict)
         and all(k in data for k in ("val_fraction", "test_fraction", "split_seed"))),
        ("metrics", has(checkpoint.get("metrics"), dict)),
    ]
    bad = [name for name, ok in checks if not ok]
    if bad:
        return f"{', '.join(bad)} missing or malformed"
    if source_of(model["name"]) == "user":  # never imported: its network must be in the file
        exported = checkpoint.get("exported")
        if not (has(exported, dict) and exported.get("kind") == "torch.export"
                and isinstance(exported.get("program"), torch.Tensor) and exported["program"].dtype == torch.uint8):
            return (f"model {model['name']!r} names a module, and hpo never imports code a checkpoint names; the "
                    f"file lacks the exported network that takes its place")
    weights = checkpoint["state_dict"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        return "state_dict holds something other than named tensors"
    broken = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        return f"its weights hold NaN or infinity ({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''})"
    return None


def model_from_checkpoint(checkpoint: dict) -> nn.Module:
    if source_of(checkpoint["model"]["name"]) == "user":
        from hpo.train.export import load_network
        return load_network(checkpoint["exported"]).eval()
    prep = checkpoint["preprocessing"]
    model = create_model(checkpoint["model"]["name"], num_classes=len(checkpoint["class_names"]),
                         in_channels=prep["channels"], image_size=tuple(prep["image_size"]),
                         **checkpoint["model"]["args"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
