"""The pictures of ``hpo report``: each a PNG inlined as a ``data:`` URI, so the report is one file.

Optuna draws the study's own plots (``optuna.visualization.matplotlib``: plotly is not a dependency); the
rest are a few matplotlib lines each. A plot that cannot be drawn raises :class:`NoPlot` with one sentence
saying why, which the report shows in its place.
"""

from __future__ import annotations

import base64
import io
import warnings

from optuna.trial import TrialState

from hpo.study.objectives import is_multi_objective, maximizes, score
from hpo.track.pictures import FIGURE_DPI, _pyplot

WIDE_IN, SMALL_IN = (8.0, 4.0), (5.0, 3.0)  # 640x320 and 400x240 pixels at FIGURE_DPI


class NoPlot(Exception):
    """A plot the study cannot give, with the sentence that says why."""


def data_uri(fig, size_in=WIDE_IN) -> str:
    """The figure as a base64 PNG ``data:`` URI; the figure is closed."""
    plt = _pyplot()
    try:
        fig.set_size_inches(*size_in)
        fig.set_dpi(FIGURE_DPI)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _optuna(name: str, study, size_in=WIDE_IN, **kwargs) -> str:
    """One of Optuna's matplotlib plots, as a data URI."""
    _pyplot()  # the Agg backend before Optuna imports pyplot
    import numpy as np
    import optuna.visualization.matplotlib as plots
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # the matplotlib plots are "experimental" since 2.2
        warnings.simplefilter("ignore", UserWarning)  # a constant axis, few trials per value: the plot says so
        axes = getattr(plots, name)(study, **kwargs)
        return data_uri(np.ravel(axes)[0].figure, size_in)


def _first_objective(study) -> dict:
    """Optuna's plots of one value, given a multi-objective study: its first objective (the metric)."""
    return {"target": score} if is_multi_objective(study) else {}


def _complete(study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _need_complete(study, at_least: int, what: str) -> None:
    found = len(_complete(study))
    if found < at_least:
        raise NoPlot(f"{what} needs at least {at_least} COMPLETE trial{'s' if at_least > 1 else ''}; "
                     f"the study has {found}.")


def history(study, metric: str) -> str:
    """The value of each COMPLETE trial and the best so far, against the trial number (Optuna's)."""
    _need_complete(study, 1, "The optimization history")
    return _optuna("plot_optimization_history", study, target_name=metric, **_first_objective(study))


def history_by_time(study, metric: str) -> str:
    """The best value so far against the wall time since the first trial started."""
    _need_complete(study, 1, "The history against time")
    trials = sorted(_complete(study), key=lambda t: t.datetime_complete)
    start = min(t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start)
    pick = max if maximizes(study) else min
    minutes = [(t.datetime_complete - start).total_seconds() / 60 for t in trials]
    best = [pick(score(t) for t in trials[:i + 1]) for i in range(len(trials))]
    plt = _pyplot()
    fig, axis = plt.subplots()
    axis.scatter(minutes, [score(t) for t in trials], s=12, color="tab:blue", label=f"{metric} of a COMPLETE trial")
    axis.step(minutes, best, where="post", color="tab:red", label="best so far")
    axis.set_xlabel("minutes since the first trial started")
    axis.set_ylabel(metric)
    axis.legend(fontsize=8)
    return data_uri(fig, SMALL_IN)


def importances(study, metric: str) -> str:
    """Optuna's parameter importances (its default evaluator, seeded): needs COMPLETE trials whose parameters
    vary."""
    _need_complete(study, 2, "Parameter importance")
    varying = {name for t in _complete(study) for name in t.params
               if len({repr(u.params.get(name)) for u in _complete(study)}) > 1}
    if not varying:
        raise NoPlot("Parameter importance needs parameters that vary between COMPLETE trials; all of them "
                     "used the same values.")
    try:
        return _optuna("plot_param_importances", study, evaluator=evaluator(), target_name=metric,
                       **_first_objective(study))
    except (ValueError, RuntimeError) as err:  # e.g. a search space the evaluator cannot split
        raise NoPlot(f"Optuna could not compute parameter importance: {str(err).splitlines()[0]}") from None


MOST_PARAMS = 6  # axes of the parallel-coordinate plot and panels of the slice grid: readable at any space
SLICE_COLUMNS = 3


def varying_params(study) -> list[str]:
    """The parameters that vary among COMPLETE trials: those every COMPLETE trial has ranked by importance as
    the importance plot ranks them (Optuna's default evaluator, seeded), then the conditional ones by name;
    all by name where Optuna cannot rank them."""
    complete = _complete(study)
    names = sorted({name for t in complete for name in t.params
                    if len({repr(u.params.get(name)) for u in complete}) > 1})
    if len(names) > 1 and len(complete) > 1:
        import optuna

        try:  # what the importance plot ranks (the parameters every COMPLETE trial has), then the conditional ones
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ranked = [n for n in optuna.importance.get_param_importances(study, evaluator=evaluator(),
                                                                                   **_first_objective(study))
                          if n in names]
            names = ranked + [n for n in names if n not in ranked]
        except (ValueError, RuntimeError):
            pass
    return names


def evaluator():
    """Optuna's default importance evaluator (fANOVA), seeded: the same study gives the same report."""
    from optuna.importance import FanovaImportanceEvaluator

    return FanovaImportanceEvaluator(seed=0)


def parallel_coordinate(study, metric: str, params: list[str]) -> str:
    _need_complete(study, 2, "The parallel-coordinate plot")
    if len(params) < 2:
        raise NoPlot("The parallel-coordinate plot needs at least two parameters that vary between COMPLETE "
                     "trials.")
    return _optuna("plot_parallel_coordinate", study, params=params[:MOST_PARAMS], target_name=metric,
                   **_first_objective(study))


def slices(study, metric: str, params: list[str]) -> str:
    """``metric`` of each COMPLETE trial against each of ``params`` (at most MOST_PARAMS), on a grid that wraps
    after SLICE_COLUMNS panels; darker dots are earlier trials."""
    _need_complete(study, 1, "The slice plot")
    if not params:
        raise NoPlot("The slice plot needs a parameter that varies between COMPLETE trials.")
    import math

    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    shown = params[:MOST_PARAMS]
    columns = min(SLICE_COLUMNS, len(shown))
    rows = math.ceil(len(shown) / columns)
    plt = _pyplot()
    fig, axes = plt.subplots(rows, columns, squeeze=False, sharey=True)
    trials = _complete(study)
    for axis, name in zip(axes.flat, shown):
        having = [t for t in trials if name in t.params]
        distribution = having[0].distributions[name]
        xs = [t.params[name] for t in having]
        if isinstance(distribution, CategoricalDistribution):
            labels = [str(c) for c in distribution.choices]
            xs = [labels.index(str(x)) for x in xs]
            axis.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30)
        elif isinstance(distribution, (FloatDistribution, IntDistribution)) and distribution.log:
            axis.set_xscale("log")
        axis.scatter(xs, [score(t) for t in having], c=[t.number for t in having], cmap="viridis", s=14)
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(shown):]:
        axis.set_visible(False)
    for row in axes:
        row[0].set_ylabel(metric, fontsize=8)
    return data_uri(fig, (WIDE_IN[0], 2.6 * rows))


def pareto(study, names: list[str]) -> str:
    """Optuna's Pareto-front plot of the first two or three objectives (``names``), every COMPLETE trial shown
    and the front's in colour."""
    _need_complete(study, 1, "The Pareto front")
    shown = names[:3]
    return _optuna("plot_pareto_front", study, target_names=shown, include_dominated_trials=True,
                   targets=(lambda t: tuple(t.values[:3])) if len(names) > 3 else None)


def learning_curves(best: list, pruned: list, metric: str) -> str:
    """``best`` and ``pruned``: (trial number, {epoch: value}). The best in colour, each named; the pruned
    thin, grey and dashed under one name (a long search prunes dozens)."""
    if not best and not pruned:
        raise NoPlot("No COMPLETE or PRUNED trial reported a value per epoch.")
    plt = _pyplot()
    fig, axis = plt.subplots()
    for i, (number, values) in enumerate(pruned):
        steps = sorted(values)
        axis.plot(steps, [values[s] for s in steps], color="tab:gray", linestyle="--", linewidth=0.8, marker=".",
                  label=f"pruned trials ({len(pruned)})" if i == 0 else None)
    for number, values in best:
        steps = sorted(values)
        axis.plot(steps, [values[s] for s in steps], marker="o", markersize=3, label=f"trial {number}")
    axis.set_xlabel("epoch")
    axis.set_ylabel(f"{metric} (validation)")
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.legend(fontsize=7, ncol=2)
    return data_uri(fig)


def compute_bars(trained: int, full: int) -> str:
    """Epochs the search trained against the same trials each run to the budget."""
    plt = _pyplot()
    fig, axis = plt.subplots()
    bars = axis.barh(["without pruning", "trained"], [full, trained], color=["tab:gray", "tab:green"])
    axis.bar_label(bars, fmt="%d epochs", fontsize=8)
    axis.set_xlabel("epochs")
    axis.set_xlim(0, full * 1.25 or 1)
    return data_uri(fig, (SMALL_IN[0], 1.8))


def seed_strip(verdict: dict) -> str:
    """The per-seed test values of the best trial and the baseline, one dot a seed, with each mean."""
    groups = [(role, verdict[role]) for role in ("baseline", "best") if verdict.get(role)]
    plt = _pyplot()
    fig, axis = plt.subplots()
    for x, (role, group) in enumerate(groups):
        values = group.get("values") or []
        axis.scatter([x] * len(values), values, color="tab:blue", s=20, zorder=3)
        if values:
            axis.hlines(sum(values) / len(values), x - 0.2, x + 0.2, color="tab:red", zorder=2)
    axis.set_xticks(range(len(groups)), [f"{role} (trial {g.get('trial')})" for role, g in groups])
    axis.set_xlim(-0.6, len(groups) - 0.4)
    axis.set_ylabel(verdict.get("metric", "test_accuracy"))
    return data_uri(fig, SMALL_IN)
