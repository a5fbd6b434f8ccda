"""What ``hpo show`` prints of a study: its trials by state, its best trial and, of a multi-objective study, its
Pareto front (``--json`` prints it as it is)."""

from __future__ import annotations

import optuna

from hpo.core.masking import masked
from hpo.report.leaderboard import format_value, text_table
from hpo.study.objectives import best_trial, is_multi_objective, objective_names, pareto_front, score, shown_cost
from hpo.study.record import StudyRecord, TrialRecord, url_of
from hpo.study.storage import counts_by_state


def describe(study: optuna.Study) -> dict:
    """The study's summary: counts by state, the best trial and the latest seed comparison's verdict."""
    best = best_trial(study)  # of a multi-objective study: the best on its metric, a point of the front
    record = StudyRecord(study)
    names = objective_names(study)
    front = [{"trial": t.number, "values": dict(zip(names, t.values)), "params": t.params}
             for t in pareto_front(study)] if is_multi_objective(study) else None
    return {
        "study": study.study_name, "storage": masked(url_of(study)), "direction": study.directions[0].name.lower(),
        "metric": record.metric, "n_trials": len(study.trials), "n_trials_by_state": counts_by_state(study),
        "objectives": names if is_multi_objective(study) else [record.metric], "pareto_front": front,
        "best_trial": best.number if best else None, "best_value": score(best) if best else None,
        "best_params": best.params if best else None,
        "best_mlflow_run_id": TrialRecord(best).mlflow_run_id if best else None,
        "seed_verdict": record.seed_verdict,  # the latest hpo retrain --seeds (hpo/retrain/seeds.py)
    }


def summary_lines(summary: dict) -> list[str]:
    """``hpo show``'s text: the study, its counts by state, its best trial and params, the seed verdict."""
    counts = summary["n_trials_by_state"]
    lines = [f"study {summary['study']!r} in {summary['storage']}: {summary['n_trials']} trials "
             f"({', '.join(f'{k} {v}' for k, v in counts.items())})"]
    if summary["best_trial"] is None:
        return lines + ["no COMPLETE trial yet"]
    lines.append(f"best: trial {summary['best_trial']}, {summary['metric']} {summary['best_value']:.4f} "
                 f"({summary['direction']}), MLflow run {summary['best_mlflow_run_id']}")
    lines += [f"  {key:16s} {format_value(value)}" for key, value in summary["best_params"].items()]
    if summary["pareto_front"] is not None:
        names = summary["objectives"]
        lines.append(f"Pareto front ({len(summary['pareto_front'])} trials; pick one with hpo retrain / hpo "
                     f"promote {summary['study']} --trial N):")
        header = ["trial", *names, "hyperparameters"]
        cells = [[str(point["trial"]), f"{point['values'][names[0]]:.4f}",
                  *(shown_cost(point["values"][n]) for n in names[1:]),
                  ", ".join(f"{k}={format_value(v)}" for k, v in point["params"].items())]
                 for point in summary["pareto_front"]]
        lines += ["  " + line for line in text_table(header, cells)]
    if summary["seed_verdict"]:
        lines.append(f"seed comparison: {summary['seed_verdict']['sentence']}")
    return lines
