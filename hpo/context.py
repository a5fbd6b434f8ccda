"""What a process works with while it runs trials or retrains: one small object instead of six parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Union

from hpo.progress import Progress

if TYPE_CHECKING:  # types only: importing them here would load torch and MLflow before they are needed
    import torch

    from data.splits import Splits
    from hpo.null_tracker import NullTracker
    from hpo.spec import StudySpec
    from hpo.tracking import Tracker


@dataclass(frozen=True)
class Context:
    spec: StudySpec
    splits: Splits  # already on ``device``
    device: torch.device
    tracker: Union[Tracker, NullTracker]  # NullTracker with --no-tracking
    parent_run_id: str | None = None  # the MLflow run that trial and retrain runs nest under
    print_line: Callable[[str], None] = print
    progress: Progress = field(default_factory=Progress)  # inside trials: bars, epoch lines (the default) or quiet
