"""What a process works with while it runs trials or retrains: the study's spec, its data on the device, its
MLflow experiment; and how the command line's stores are checked before any of them is opened.

The command line imports this module (through ``hpo.api``) before it has judged its input, so torch, MLflow
and the data sets are imported inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

from hpo.core.errors import SpecError, UserError
from hpo.search.progress import Progress
from hpo.stores.retry import check_writable
from hpo.stores.urls import (artifact_root, check_server_answers, check_storage_url, check_tracking_uri, local_path,
                             normalized, sqlite_path, storage_url, tracking_uri)
from hpo.train.state import state_folder
from hpo.train.threads import Threads

NO_PARENT_RUN = "-"  # --worker-of when tracking is off: a worker nested under no MLflow run

if TYPE_CHECKING:  # types only: importing them here would load torch and MLflow before they are needed
    import torch

    from hpo.data.splits import Splits
    from hpo.spec.study_file import StudySpec
    from hpo.track.null_tracker import NullTracker
    from hpo.track.tracker import Tracker
    from hpo.train.trainer import Setup


@dataclass(frozen=True)
class Context:
    spec: StudySpec
    splits: Splits  # already on ``device``
    device: torch.device
    tracker: Union[Tracker, NullTracker]  # NullTracker with --no-tracking
    parent_run_id: str | None = None  # the MLflow run that trial and retrain runs nest under
    print_line: Callable[[str], None] = print
    progress: Progress = field(default_factory=Progress)  # inside trials: bars, epoch lines (the default) or quiet
    threads: "Threads | None" = None  # the CPU threads this process computes with (hpo/train/threads.py)

    def setup(self, seed: int) -> Setup:
        """What a training of this study with ``seed`` is given (hpo/train/trainer.py)."""
        from hpo.train.trainer import Setup

        return Setup(self.device, self.splits.mean, self.splits.std, seed, compile_mode=self.spec.compile)

    def build_model(self):
        """The study's model, freshly initialised for its data."""
        return self.spec.model.build(self.splits)

    def with_model(self, model) -> "Context":
        """This context for one trial's (or retrain's) model, where the study searches the model."""
        return self if model is self.spec.model else dataclasses.replace(
            self, spec=dataclasses.replace(self.spec, model=model))


@dataclass(frozen=True)
class Stores:
    """Where a study lives, as given on the command line (None: the environment's or the default)."""

    storage: str | None = None  # Optuna storage URL: $HPO_STORAGE, else sqlite:///hpo.db
    tracking: str | None = None  # MLflow tracking URI: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    artifacts: str | None = None  # where a new MLflow experiment keeps its artifacts
    tracking_off: bool = False  # --no-tracking: nothing goes to MLflow


@dataclass(frozen=True)
class RunRequest:
    """One ``hpo run``, as the command line asked for it."""

    study_file: str
    stores: Stores
    overrides: tuple[str, ...] = ()
    device: str | None = None  # None: the study's
    gpus: str | None = None  # "0,1" or "cpu": one worker process per slot; None: search in this process
    trials_per_gpu: int = 1
    retrain: bool = True
    invocation: str = "hpo run"  # logged with the parent run
    worker_of: str | None = None  # set in a worker: the parent's MLflow run id (or NO_PARENT_RUN)
    worker_threads: int | None = None  # set in a worker: its lead's choice
    threads: int | None = None  # --threads (hpo/train/threads.py)
    quiet: bool = False  # --quiet: no bars or epoch lines inside trials (hpo/search/progress.py)


def check_stores(stores: Stores, trains: bool = True) -> None:
    """Refuse store URLs that cannot work, and local stores that cannot be written (read-only, full), before
    any store is created or any data is loaded; when the command ``trains``, also the folders it writes
    artifacts and training state to."""
    storage = storage_url(stores.storage)
    tracking = None if stores.tracking_off else tracking_uri(stores.tracking)
    if tracking and normalized(tracking) == normalized(storage):
        raise UserError(f"the study storage and MLflow are both {tracking}; give each a file of its own "
                        f"(default: sqlite:///hpo.db and sqlite:///mlflow.db)")
    check_storage_url(storage)
    if tracking:
        check_tracking_uri(tracking)
        check_server_answers(tracking)  # a dead server: one line now, not a hang after the study is created
    for url, what in ((storage, "--storage / HPO_STORAGE"), (tracking, "--tracking-uri / MLFLOW_TRACKING_URI")):
        path = local_path(url) if url else None
        if path is not None:
            check_writable(path, what)
    if trains:  # where running trials keep their training state
        if state_folder().exists() and not state_folder().is_dir():
            raise UserError(f"HPO_STATE: {state_folder()} is a file; point HPO_STATE at a folder (it is made if "
                            f"missing)")
        check_writable(state_folder(), "HPO_STATE")
    if tracking and trains:  # the folder a new experiment keeps its artifacts in: given, or a new store's
        new_store = sqlite_path(tracking) is not None and not sqlite_path(tracking).exists()
        if stores.artifacts or os.environ.get("HPO_ARTIFACTS") or new_store:
            check_writable(artifact_root(stores.artifacts), "--artifacts / HPO_ARTIFACTS")


def store_flags(stores: Stores) -> str:
    """The store options a follow-up command needs to find the same MLflow store."""
    return f" --tracking-uri {shlex.quote(stores.tracking)}" if stores.tracking else ""  # ? and & stay literal


def open_tracker(study_name: str, stores: Stores):
    """MLflow's experiment for the study, or the tracker that logs nothing (``--no-tracking``)."""
    if stores.tracking_off:
        from hpo.track.null_tracker import NullTracker
        return NullTracker()
    from hpo.core.interrupts import signals_deferred

    with signals_deferred():  # a Ctrl-C inside pydantic's schema building (MLflow's import) is not a clean stop
        from hpo.track.tracker import Tracker  # MLflow: loaded once the command's input is judged good
    return Tracker(study_name, stores.tracking, stores.artifacts,
                   several_machines=sqlite_path(storage_url(stores.storage)) is None)


def study_threads(spec, splits, device, flag: int | None, cpu_workers: int | None = None) -> Threads:
    """The CPU threads a training process of this study computes with (hpo/train/threads.py): ``--threads``
    (``flag``), else ``HPO_THREADS``, else chosen from the cores, the ``cpu_workers`` sharing them (default:
    this process alone, when it trains on the CPU) and the study's largest network at its largest batch."""
    from hpo.study.objectives import network_flops
    from hpo.train.threads import choose_threads, requested_by, requested_threads

    requested = requested_threads(flag)
    on_cpu = cpu_workers if cpu_workers is not None else int(device.type == "cpu")
    flops = network_flops(spec, splits) if requested is None and on_cpu else None
    batch = spec.search.largest("batch_size")  # one thread costs a large batch more than two cost a small one
    return choose_threads(requested, flops * batch if flops is not None else None, max(1, on_cpu),
                          requested_by(flag), batch)


def _forward_once(network, splits) -> None:
    """A user's network run on two blank images of the data's size: one that cannot take them (a Linear sized
    for other images) fails here, saying so, before its export is tried."""
    import torch

    was_training = network.training
    try:
        with torch.no_grad():
            network.eval()(torch.zeros(2, splits.channels, *splits.image_size))
    except Exception as err:  # noqa: BLE001 - whatever the user's forward raises
        raise ValueError(f"its forward pass on them raised {type(err).__name__}: "
                         f"{' '.join(str(err).split())[:300]}") from None
    finally:
        network.train(was_training)


def load_data(spec, device=None):
    """The study's splits (on ``device``), after checking that its model can be built for them."""
    from hpo.data.errors import DataError
    from hpo.data.splits import load_splits
    from hpo.models import check_model, source_of

    d = spec.data
    pretrained = spec.model.args.get("pretrained")
    if pretrained and not Path(pretrained).is_file():
        raise UserError(f"{spec.source}: model.pretrained: no such weights file {pretrained!r}; download the weights "
                        f"once where there is a network and point model.pretrained at the file")
    try:
        splits = load_splits(d.name, d.args, d.val_fraction, d.test_fraction, d.split_seed, d.normalize)
    except DataError as err:  # a data field the loader judged: name the file too
        raise (SpecError(spec.source, err.field, err.message) if err.field else UserError(err.message)) from None
    if spec.metric == "val_top5" and splits.num_classes <= 5:
        raise SpecError(spec.source, "metric", f"val_top5 needs more than 5 classes; {d.name} has "
                                               f"{splits.num_classes}: choose val_accuracy, val_f1_macro, ...")
    for model in spec.model.candidates():  # every model a trial may train
        try:  # a model argument only the constructor can judge (a stem, an image too small) fails here, once
            check_model(model.name, model.args, splits.num_classes, splits.channels, splits.image_size)
            network = model.build(splits)
            if source_of(model.name) == "user":  # its checkpoint will keep it as a program: exportable?
                _forward_once(network, splits)
                from hpo.train.export import export_network
                export_network(network, splits.channels, tuple(splits.image_size))
        except Exception as err:  # noqa: BLE001 - whatever a constructor (the user's too) raises for these images
            raise UserError(f"{spec.source}: model: {model.name} cannot be built for {splits.channels}x"
                            f"{splits.image_size[0]}x{splits.image_size[1]} images: "
                            f"{str(err).splitlines()[0]}") from None
    return splits.to(device) if device is not None else splits
