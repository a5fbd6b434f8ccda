"""The pictures of a study: learning curves, the confusion matrix and per-class accuracy, as small PNGs."""

from __future__ import annotations

from pathlib import Path

CURVES = "curves.png"  # a training's learning curves, in its MLflow run and on its dashboard page
FIGURE_SIZE_IN, FIGURE_DPI = (5.0, 3.2), 80  # 400x256 pixels, about 20 kB: cheap next to a trial's epochs


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # no display on a training machine
    import matplotlib.pyplot as plt
    return plt


def save_curves(epochs, metric: str, title: str, path: Path) -> Path:
    """Training and validation loss (left axis) and ``metric`` (right axis) per epoch, as a PNG."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    x = [e.epoch for e in epochs]
    fig, loss_axis = plt.subplots(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI)
    try:
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
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
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
