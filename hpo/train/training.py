"""One training, epoch by epoch, as a trial and a retrain both run it: resumable, and stopped when it diverges.

What every training of a study does around :func:`hpo.train.trainer.fit`, in order:

    1. read the state its state file kept, if it is this training's (a retry, a rerun after a kill)
    2. seed everything and build the model
    3. each epoch: fit it; log it (``log.log_epoch``); stop with :class:`Diverged` if it diverged;
       hand it to the caller (a trial reports it to Optuna, a retrain watches the validation score);
       then save the state (with what the caller asked to keep; a full disk stops the work with one line,
       ``hpo/stores/retry.py``) and offer it to ``log.keep_state``
    4. the caller's ``stop()`` ends it after that epoch is saved, and a rerun of a stopped training
       trains no more: its model gets the saved weights

Example (a retrain's loop, without its early stopping)::

    training = Training(lambda: spec.model.build(splits), splits.train_and_val(), hp, 30, setup, state,
                        num_classes=splits.num_classes)
    for result in training.epochs(run):
        print(result.epoch, result.train_loss)
    model = training.model
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch.nn as nn

from hpo.core.interrupts import raise_if_swallowed
from hpo.stores.retry import retried
from hpo.train.device import seed_everything
from hpo.train.divergence import Diverged, divergence
from hpo.train.hyperparams import Hyperparams
from hpo.train.state import StateFile
from hpo.train.trainer import EpochResult, Setup, fit

OWN_KEYS = ("trainer", "fingerprint", "first_loss", "stopped")  # the rest of a saved state is the caller's


class Training:
    """``build()``'s model trained on ``train`` for ``epochs`` (see the module's steps); ``kept`` holds what the
    caller saved with the last epoch (``keep``), ``resumed_after`` the epoch it goes on after (0: a fresh start)."""

    def __init__(self, build: Callable[[], nn.Module], train, hp: Hyperparams, epochs: int, setup: Setup,
                 state: StateFile, *, val=None, num_classes: int):
        self.train, self.val, self.hp, self.epochs_total, self.setup = train, val, hp, epochs, setup
        self.state, self.num_classes = state, num_classes
        self.saved = state.load()  # None for a training of other settings under the same name
        self.kept: dict[str, Any] = {k: v for k, v in (self.saved or {}).items() if k not in OWN_KEYS}
        self.first_loss: float | None = self.saved["first_loss"] if self.saved else None
        self.stopped = bool(self.saved and self.saved.get("stopped"))
        seed_everything(setup.seed)  # the model's initial weights
        self.model = build()
        if self.stopped:  # killed after it was stopped: the training is over, its weights are the saved ones
            self.model.load_state_dict(self.saved["trainer"]["model"])

    @property
    def resumed_after(self) -> int:
        return self.saved["trainer"]["epoch"] if self.saved else 0

    def keep(self, **values: Any) -> None:
        """Save ``values`` with this epoch's state; they are ``kept`` when the training resumes."""
        self.kept.update(values)

    def stop(self) -> None:
        """End the training after this epoch, once its state is saved."""
        self.stopped = True

    def epochs(self, log, on_step: Callable[[int, int, int], None] | None = None) -> Iterator[EpochResult]:
        """The epochs still to train, each logged to ``log`` (``log_epoch``, ``keep_state``: an MLflow run)."""
        if self.stopped:
            return
        latest: dict = {}
        for result in fit(self.model, self.train, self.hp, self.epochs_total, self.setup, val=self.val,
                          resume=self.saved["trainer"] if self.saved else None, keep_state=latest.update,
                          on_step=on_step):
            raise_if_swallowed()
            log.log_epoch(result)
            self.first_loss = result.train_loss if self.first_loss is None else self.first_loss
            reason = divergence(result, self.first_loss, self.num_classes, self.hp.warmup_epochs)
            if reason:
                raise Diverged(reason, result)
            yield result
            retried(f"the training state file ({self.state.path})", self.state.save,
                    {"trainer": dict(latest), "first_loss": self.first_loss, "stopped": self.stopped, **self.kept})
            log.keep_state(self.state.path)  # on a tracking server, for a retry on another machine
            if self.stopped:
                return
