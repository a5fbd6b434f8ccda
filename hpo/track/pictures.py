"""The pictures of a study: learning curves, the confusion matrix and per-class accuracy, as small PNGs."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

CURVES = "curves.png"  # a training's learning curves, in its MLflow run and on its dashboard page
FIGURE_SIZE_IN, FIGURE_DPI = (5.0, 3.2), 80  # 400x256 pixels, about 20 kB: cheap next to a trial's epochs


_drawer: ThreadPoolExecutor | None = None  # one thread: the pictures of trials, in order, off their path
_pending: list[Future] = []
_lock = threading.Lock()


def draw_later(job: Callable[[], None]) -> None:
    """Run ``job`` (draw a picture and store it; it handles its own errors) on the pictures thread, so a trial's
    curves are drawn while the next trial runs: the picture was about a third of a trial's fixed cost
    (docs/benchmarks.md). ``wait_for_pictures`` waits for them; the search does before it returns."""
    global _drawer
    with _lock:
        if _drawer is None:
            _drawer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpo-pictures")
        _pending[:] = [f for f in _pending if not f.done()]
        _pending.append(_drawer.submit(job))


def wait_for_pictures() -> None:
    """Until every picture handed to ``draw_later`` is drawn and stored."""
    with _lock:
        pending = list(_pending)
    wait(pending)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # no display on a training machine
    import matplotlib.pyplot as plt
    return plt


def save_curves(epochs, metric: str, title: str, path: Path) -> Path:
    """Training and validation loss (left axis) and ``metric`` (right axis) per epoch, as a PNG.

    Drawn once per trial, so drawn cheaply: a bare Agg figure (no pyplot and its figure manager) with fixed
    margins (``tight_layout`` renders the figure twice), about a third of pyplot's time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    x = [e.epoch for e in epochs]
    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.13, right=0.85, bottom=0.16, top=0.9)
    loss_axis = fig.add_subplot()
    loss_axis.plot(x, [e.train_loss for e in epochs], label="train_loss", color="tab:blue", marker="o", markersize=3)
    if any(e.val_loss is not None for e in epochs):
        loss_axis.plot(x, [e.val_loss for e in epochs], label="val_loss", color="tab:orange", marker="o", markersize=3)
    loss_axis.set_xlabel("epoch")
    if len(x) <= 12:
        loss_axis.set_xticks(x)
    else:
        loss_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_axis.set_ylabel("loss")
    values = [getattr(e, metric, None) for e in epochs]
    if any(v is not None for v in values):
        metric_axis = loss_axis.twinx()
        metric_axis.plot(x, values, label=metric, color="tab:green", marker="o", markersize=3)
        metric_axis.set_ylabel(metric)
        metric_axis.legend(loc="center right", fontsize=7)
    loss_axis.legend(loc="upper right", fontsize=7)
    loss_axis.set_title(title, fontsize=9)
    fig.savefig(path, format="png")
    return path


def save_test_pictures(labels, predicted, class_names, folder: Path) -> list[Path]:
    """``confusion_matrix.png`` and ``per_class_accuracy.png`` of the test split."""
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    plt = _pyplot()
    classes = list(range(len(class_names)))
    matrix = confusion_matrix(labels, predicted, labels=classes)
    side = min(12.0, 3.0 + 0.35 * len(classes))  # readable up to a few dozen classes
    fig, axis = plt.subplots(figsize=(side, side), dpi=FIGURE_DPI)
    try:
        ConfusionMatrixDisplay(matrix, display_labels=class_names).plot(
            ax=axis, colorbar=False, include_values=len(classes) <= 20, xticks_rotation="vertical")
        axis.set_title("test split: true class (rows) against predicted", fontsize=9)
        fig.tight_layout()
        fig.savefig(folder / "confusion_matrix.png", format="png")
    finally:
        plt.close(fig)
    totals = matrix.sum(axis=1)
    accuracy = np.divide(np.diag(matrix), totals, out=np.zeros(len(classes)), where=totals > 0)
    fig, axis = plt.subplots(figsize=(max(FIGURE_SIZE_IN[0], 0.3 * len(classes)), FIGURE_SIZE_IN[1]),
                             dpi=FIGURE_DPI)
    try:
        axis.bar([str(c) for c in class_names], accuracy, color="tab:blue")
        axis.set_ylim(0, 1)
        axis.set_ylabel("test accuracy")
        axis.set_title(f"per-class test accuracy (mean {accuracy.mean():.3f})", fontsize=9)
        axis.tick_params(axis="x", labelrotation=90 if len(classes) > 12 else 0, labelsize=7)
        fig.tight_layout()
        fig.savefig(folder / "per_class_accuracy.png", format="png")
    finally:
        plt.close(fig)
    return [folder / "confusion_matrix.png", folder / "per_class_accuracy.png"]
