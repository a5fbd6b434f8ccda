"""What a process works with while it runs trials or retrains: one small object instead of six parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Context:
    spec: Any  # hpo.spec.StudySpec
    splits: Any  # data.splits.Splits, already on ``device``
    device: Any  # torch.device
    tracker: Any  # hpo.tracking.Tracker, or hpo.null_tracker.NullTracker with --no-tracking
    parent_run_id: str | None = None  # the MLflow run that trial and retrain runs nest under
    print_line: Callable[[str], None] = print
