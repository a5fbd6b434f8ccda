"""When training has diverged: a trial stops (PRUNED, with the reason), a retrain fails with it.

Three signs, each far from what a trial that is merely poor shows:

- a non-finite loss;
- a training loss over ``LOSS_FACTOR`` times the smaller of the first epoch's and ln(classes), the loss of
  guessing uniformly (lr 10 with digits_cnn reached 859,413: the first epoch is already past 100 x 2.3);
- validation accuracy at chance (``at_chance``: a network that answers one class scores that class's
  share, a little over 1/classes in a stratified split) after the warm-up epochs and one
  more, while the training loss is no lower than the first epoch's.

A trial stopped for any of these is PRUNED with the reason; a retrain fails with it. A loss that falls while
the accuracy stays at chance is not stopped: it may be a slow start (SGD at lr 1e-3) as well as a network
that a large lr killed and that settles above ln(classes) (3.20 -> 2.81 with 10 classes, seen on one CPU).
Either way a trial that ends its budget at chance is COMPLETE and flagged ``at_chance``
(``hpo/search/trial.py``), so it is never mistaken for one that learned.
"""

from __future__ import annotations

import math

LOSS_FACTOR = 100
CHANCE_MARGIN = 0.02  # above 1/classes: a stratified split's classes differ by an image or so


def at_chance(result, num_classes: int) -> bool:
    """Whether the epoch's validation accuracy is no better than answering one class: at most 1/classes and a
    margin for the split's rounding (0.12 for 10 classes, 0.52 for 2, 0.012 for 100). On imbalanced data,
    answering the largest class scores more and is not caught here."""
    return (result.val_accuracy is not None
            and result.val_accuracy <= 1 / num_classes + min(CHANCE_MARGIN, 0.2 / num_classes))


def divergence(result, first_train_loss: float, num_classes: int, warmup_epochs: int = 0) -> str | None:
    """Why training has diverged by this epoch (an ``EpochResult``), or None."""
    if not all(math.isfinite(v) for v in (result.train_loss, result.val_loss) if v is not None):
        return f"diverged: non-finite loss at epoch {result.epoch}"
    bound = LOSS_FACTOR * min(max(first_train_loss, 0.01), math.log(num_classes))
    if result.train_loss > bound:
        return (f"diverged: training loss {result.train_loss:.4g} at epoch {result.epoch} is over {LOSS_FACTOR}x "
                f"min(the first epoch's {first_train_loss:.4g}, ln {num_classes} classes)")
    if result.epoch > warmup_epochs + 1 and at_chance(result, num_classes) and result.train_loss >= first_train_loss:
        return (f"diverged: validation accuracy {result.val_accuracy:.4f} at epoch {result.epoch} is at chance "
                f"(1/{num_classes}) and the training loss has not fallen")
    return None


class Diverged(Exception):
    """Raised by :class:`hpo.train.training.Training` at the epoch whose result shows a divergence."""

    def __init__(self, reason: str, result):
        super().__init__(reason)
        self.reason, self.result = reason, result
