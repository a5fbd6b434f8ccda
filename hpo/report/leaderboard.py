"""The leaderboard: a study's best trials in order, and the retrains of its trials.

COMPLETE trials are ranked by their value in the study's direction (of a multi-objective study: its first
objective, the metric, with the costs beside it; hpo/study/objectives.py); PRUNED trials follow, ranked by the last
value they reported before the pruner stopped them (a pruned trial is never better than a finished one: it
was stopped because it looked worse). FAILED and RUNNING trials have no verdict and are not ranked.
Used by ``hpo show --top`` and ``hpo report``.

The retrains are read from the study's user attribute ``retrain_results`` (written by ``hpo retrain``);
older studies have none, and then the MLflow retrain runs are read instead, when an MLflow store is there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from optuna.trial import FrozenTrial, TrialState

from hpo.core.masking import masked
from hpo.stores.retry import first_line
from hpo.stores.urls import absolute_sqlite, bound_mlflow_requests, local_path
from hpo.study.objectives import maximizes, objective_names, score, shown_cost
from hpo.study.record import StudyRecord, TrialRecord

MISSING = "-"  # a parameter a trial did not use (momentum with Adam)


@dataclass(frozen=True)
class Row:
    rank: int
    trial: int
    state: str  # COMPLETE or PRUNED
    value: float  # the trial's value; for a pruned trial, the last it reported
    epochs: int  # epochs it trained
    params: dict
    costs: dict = field(default_factory=dict)  # a multi-objective study's other objectives: {name: value}

    @property
    def pruned(self) -> bool:
        return self.state == TrialState.PRUNED.name

    def as_dict(self) -> dict:
        return {**asdict(self), "pruned": self.pruned}


def last_reported(trial: FrozenTrial) -> float | None:
    """The value a trial reported last (at its highest step), or None if it reported none."""
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def epochs_trained(trial: FrozenTrial) -> int:
    """The epochs a trial trained: its ``epochs`` attribute (set by hpo's trainer), else one per reported value."""
    return TrialRecord(trial).epochs


def ranked(study) -> list[Row]:
    """Every COMPLETE trial, best first, then every PRUNED trial that reported a value, best first."""
    sign = -1 if maximizes(study) else 1
    costs = objective_names(study)[1:]

    def rows(state: TrialState, value_of) -> list[tuple[float, FrozenTrial]]:
        scored = [(value_of(t), t) for t in study.get_trials(deepcopy=False, states=(state,))]
        return sorted(((v, t) for v, t in scored if v is not None), key=lambda pair: (sign * pair[0], pair[1].number))

    ordered = rows(TrialState.COMPLETE, score) + rows(TrialState.PRUNED, last_reported)
    return [Row(rank, t.number, t.state.name, float(value), epochs_trained(t), shown_params(t),
                dict(zip(costs, t.values[1:])) if t.values else {})
            for rank, (value, t) in enumerate(ordered, start=1)]


def shown_params(trial: FrozenTrial) -> dict:
    """A trial's params, with the learning rate it trained with where the study scales lr by batch size."""
    effective = TrialRecord(trial).effective_lr
    return {**trial.params, **({"lr_effective": effective} if effective is not None else {})}


def leaderboard(study, top: int) -> list[Row]:
    """The ``top`` best trials (see :func:`ranked`)."""
    return ranked(study)[:top]


def split_params(rows: list[Row]) -> tuple[list[str], dict]:
    """(names of the parameters whose values differ between ``rows``, {name: value} of those that do not).

    A parameter some trials lack (momentum, with Adam) differs."""
    names = sorted({name for row in rows for name in row.params})
    varying = [n for n in names if len({repr(row.params.get(n, MISSING)) for row in rows}) > 1]
    constant = {n: rows[0].params[n] for n in names if n not in varying}
    return varying, constant


def format_value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table(rows: list[Row], metric: str) -> tuple[list[str], list[list[str]], dict]:
    """(header, cells, constant params): the leaderboard as text, for the console and Markdown."""
    varying, constant = split_params(rows)
    costs = list(rows[0].costs) if rows else []
    header = ["rank", "trial", "state", metric, *costs, "epochs", *varying]
    cells = [[str(r.rank), str(r.trial), "PRUNED (last value)" if r.pruned else r.state, f"{r.value:.4f}",
              *(shown_cost(r.costs[c]) if c in r.costs else MISSING for c in costs),
              str(r.epochs), *(format_value(r.params.get(n, MISSING)) for n in varying)] for r in rows]
    return header, cells, constant


def text_table(header: list[str], cells: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell, one string per line."""
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *cells]]


# --- retrains ------------------------------------------------------------------------------------------------


def retrains(study, tracking_uri: str | None) -> tuple[list[dict], str]:
    """(the study's retrain results, oldest first; where they were read: 'study', 'mlflow' or 'none', or why
    MLflow could not be read: a report is still worth having without them)."""
    recorded = StudyRecord(study).retrain_results
    if recorded:
        return sorted(recorded, key=lambda r: r.get("finished_at") or ""), "study"
    if tracking_uri is None:
        return [], "none"
    try:
        runs = mlflow_retrains(study, tracking_uri)
    except Exception as err:  # a tracking server that is down, a store of another MLflow version
        return [], f"MLflow store {masked(tracking_uri)} unreadable ({masked(first_line(err))})"
    return runs, "mlflow" if runs else "none"


def mlflow_retrains(study, tracking_uri: str) -> list[dict]:
    """The finished retrain runs of the study's MLflow experiment, in ``retrain_results``' shape; [] when the
    store or the experiment is not there (nothing is created)."""
    path = local_path(tracking_uri)
    if path is not None and not path.exists():
        return []
    from mlflow.tracking import MlflowClient

    bound_mlflow_requests()

    client = MlflowClient(tracking_uri=absolute_sqlite(tracking_uri))  # hpo/stores/urls.py: one engine per URL
    experiment_id = StudyRecord(study).experiment_id
    if experiment_id is None:
        experiment = client.get_experiment_by_name(study.study_name)
        if experiment is None:
            return []
        experiment_id = experiment.experiment_id
    runs = client.search_runs([experiment_id], "tags.`hpo.role` = 'retrain' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time ASC"], max_results=1000)
    return [_retrain_of(run) for run in runs]


def _retrain_of(run) -> dict:
    import datetime

    metrics, tags, params = run.data.metrics, run.data.tags, run.data.params

    def whole(value) -> int | None:
        return None if value is None else int(float(value))

    finished = run.info.end_time
    return {"trial": whole(tags.get("hpo.retrain_of_trial")), "epochs": whole(tags.get("hpo.epochs")),
            "epochs_trained": whole(metrics.get("epochs_trained")), "seed": whole(params.get("seed")),
            **{name: metrics.get(name) for name in TEST_SCORES},
            "n_test_images": whole(metrics.get("n_test_images")), "run_id": run.info.run_id,
            "group": tags.get("hpo.seed_group"), "role": tags.get("hpo.seed_role"),
            "finished_at": datetime.datetime.fromtimestamp(finished / 1000, datetime.timezone.utc).isoformat(
                timespec="seconds") if finished else None}


TEST_SCORES = ("test_accuracy", "test_loss", "test_top5", "test_f1_macro", "test_balanced_accuracy")
RETRAIN_COLUMNS = ("trial", "epochs", "epochs_trained", "seed", *TEST_SCORES, "n_test_images", "role", "group",
                   "run_id", "finished_at")


def retrain_table(results: list[dict], metric: str | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, cells) of the retrains: test accuracy and loss, and the study's metric on the test split where it
    is another; columns no result fills are left out."""
    shown = {"test_accuracy", "test_loss", (metric or "").replace("val_", "test_")}
    columns = [c for c in RETRAIN_COLUMNS if (c not in TEST_SCORES or c in shown)
               and any(r.get(c) is not None for r in results)]
    cells = [[MISSING if r.get(c) is None else (f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]))
              for c in columns] for r in results]
    return columns, cells


def leaderboard_lines(rows: list[Row], metric: str, results: list[dict], source: str) -> list[str]:
    """``hpo show --top``'s text: the ranked trials (only the parameters that differ as columns), then the
    retrains."""
    header, cells, constant = table(rows, metric)
    lines = [f"top {len(rows)} of the ranked trials (COMPLETE by {metric}, then PRUNED by the last value "
             f"reported):" if rows else "no ranked trial yet (none COMPLETE or PRUNED)"]
    lines += ["  " + line for line in (text_table(header, cells) if rows else [])]
    if constant:
        lines.append("  same in all: " + ", ".join(f"{k}={format_value(v)}" for k, v in constant.items()))
    if not results:
        return lines + ["retrains: none recorded" + ("" if source == "none" else f" in the study; {source}")]
    lines.append(f"retrains ({'from MLflow' if source == 'mlflow' else 'recorded in the study'}):")
    return lines + ["  " + line for line in text_table(*retrain_table(results, metric))]
