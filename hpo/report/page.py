"""``hpo report``: one self-contained HTML page about a study, and the same facts in Markdown beside it (its
pictures as PNG files in a folder of the same stem).

Everything comes from the Optuna storage (so a ``--no-tracking`` study or one on PostgreSQL reports the same
way); only the retrain results of a study older than its ``retrain_results`` attribute are read from MLflow
(``hpo/report/leaderboard.py``). Each section is a list of blocks (a paragraph, a table, a picture, a listing),
rendered once as HTML and once as Markdown, so the two never say different things. The page loads nothing:
pictures are inline PNGs, the style is inline, there is no script.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from optuna.trial import TrialState

from hpo.core.errors import UserError
from hpo.core.masking import masked
from hpo.report import plots
from hpo.report.leaderboard import Row, epochs_trained, format_value, ranked, retrain_table, retrains, table
from hpo.spec.study_file import parse_study
from hpo.study.objectives import is_multi_objective, objective_names, pareto_front, shown_cost
from hpo.study.record import StudyRecord, url_of
from hpo.study.storage import FINISHED, counts_by_state

SECTIONS = {"study": "The study", "pareto": "Pareto front", "history": "Optimization history", "importances": "Parameter importances",
            "parameters": "Parameters against the metric", "curves": "Learning curves", "compute": "Compute",
            "leaderboard": "Leaderboard", "seeds": "Baseline against best, over seeds",
            "retrains": "Retrain results", "spec": "The study file"}

# A block: ("p", text) | ("table", header, cells) | ("img", data URI, alt text) | ("pre", text)
Block = tuple


@dataclass(frozen=True)
class Compute:
    """Epochs the search trained against the same trials each run to the budget, and their time."""
    trials: int  # COMPLETE and PRUNED: the trials the pruner had a say in
    trained: int
    budget_epochs: int | None  # None: the study has no spec to read it from
    trial_time_s: float  # every finished trial's duration, FAILED ones included

    @property
    def full(self) -> int | None:
        return None if self.budget_epochs is None else self.trials * self.budget_epochs

    @property
    def saved(self) -> int | None:
        return None if self.full is None else self.full - self.trained

    @property
    def saved_percent(self) -> float | None:
        return None if not self.full else 100.0 * self.saved / self.full


def compute_of(study, budget_epochs: int | None) -> Compute:
    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if t.state in FINISHED]
    time_s = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                 if t.state.is_finished() and t.datetime_start and t.datetime_complete)
    return Compute(len(counted), sum(epochs_trained(t) for t in counted), budget_epochs, time_s)


def spec_of(study):
    """The study's spec as ``hpo run`` kept it, or None (a study made elsewhere, or a file hpo reads no more)."""
    raw = StudyRecord(study).spec
    if raw is None:
        return None
    try:
        return parse_study(raw, f"study {study.study_name!r}", import_user_code=False)
    except (UserError, ValueError):
        return None


# --- the sections ------------------------------------------------------------------------------------------


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _picture(draw: Callable[..., str], *args, alt: str) -> Block:
    """The plot, or the sentence that says why there is none."""
    try:
        return ("img", draw(*args), alt)
    except plots.NoPlot as reason:
        return ("p", str(reason))


def study_section(study, spec, metric: str) -> list[Block]:
    counts = counts_by_state(study)
    rows = [["name", study.study_name], ["storage", masked(url_of(study))], ["metric", metric],
            ["objectives" if is_multi_objective(study) else "direction",
             ", ".join(f"{n} ({d.name.lower()})" for n, d in zip(objective_names(study), study.directions))
             if is_multi_objective(study) else study.direction.name.lower()],
            ["trials", f"{len(study.trials)}: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none")]]
    if spec is not None:
        b = spec.budget
        rows += [["budget", f"{b.trials} trials of up to {b.epochs} epochs; retrain "
                            f"{', '.join(map(str, b.retrain.epochs))} epochs; timeout "
                            + (f"{b.timeout_s:g} s" if b.timeout_s is not None else "none")],
                 ["data, model", f"{spec.data.name}, {spec.model.name}"],
                 ["sampler, pruner", f"{spec.sampler.name}, {spec.pruner.name}; seed {spec.seed}"]]
    else:
        rows.append(["budget", "unknown: the study has no spec (it was not created by hpo run)"])
    return [("table", ["", ""], rows)]


def pareto_section(study) -> list[Block]:
    names = objective_names(study)
    front = pareto_front(study)
    text = (f"The {_count(len(front), 'trial')} that no other COMPLETE trial beats on every objective "
            f"({', '.join(names)}), best {names[0]} first. Optuna does not prune a study with several objectives: "
            f"every trial trained its whole budget. `hpo retrain {study.study_name} --trial N` retrains a point, "
            f"`hpo promote {study.study_name} --trial N` registers it.")
    cells = [[str(t.number), f"{t.values[0]:.4f}", *(shown_cost(v) for v in t.values[1:]),
              ", ".join(f"{k}={format_value(v)}" for k, v in t.params.items())] for t in front]
    return [("p", text), ("table", ["trial", *names, "hyperparameters"], cells),
            _picture(plots.pareto, study, names, alt=f"{' against '.join(names[:3])}: the Pareto front")]


def history_section(study, metric: str) -> list[Block]:
    return [_picture(plots.history, study, metric, alt=f"{metric} of each trial and the best so far"),
            _picture(plots.history_by_time, study, metric, alt=f"best {metric} so far against wall time")]


def curves_section(study, rows: list[Row], top: int, metric: str) -> list[Block]:
    if is_multi_objective(study):
        return [("p", f"Optuna keeps no value per epoch of a study with several objectives (it takes no reports "
                      f"from them); each trial's {metric} after every epoch is in its MLflow run, with its curves "
                      f"(curves.png).")]
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    best = [(r.trial, dict(by_number[r.trial].intermediate_values)) for r in rows if not r.pruned][:top]
    pruned = [(t.number, dict(t.intermediate_values))
              for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)) if t.intermediate_values]
    text = (f"{metric} after each epoch: the best {_count(len(best), 'COMPLETE trial')}, and "
            f"{_count(len(pruned), 'PRUNED trial')} (grey, dashed) up to the epoch each was stopped at.")
    return [("p", text), _picture(plots.learning_curves, best, pruned, metric, alt="learning curves")]


def parameters_section(study, metric: str) -> list[Block]:
    params = plots.varying_params(study)
    shown = params[:plots.MOST_PARAMS]
    text = (f"The first {len(shown)} of the {len(params)} parameters that vary between COMPLETE trials, the most "
            f"important first (as ranked above; conditional ones after): {', '.join(shown)}; the leaderboard has "
            f"every value."
            if len(params) > len(shown) else
            f"The {_count(len(params), 'parameter')} that vary between COMPLETE trials"
            + (f": {', '.join(params)}." if params else "."))
    return [("p", text),
            _picture(plots.parallel_coordinate, study, metric, params, alt="parallel coordinates"),
            _picture(plots.slices, study, metric, params, alt=f"{metric} against each parameter")]


def compute_section(compute: Compute, pruned: bool = True) -> list[Block]:
    c = compute
    blocks: list[Block] = []
    if not pruned:  # Optuna prunes no study with several objectives
        return [("p", f"{_count(c.trials, 'COMPLETE trial')} trained {_count(c.trained, 'epoch')}, each its whole "
                      f"budget: Optuna does not prune a study with several objectives. Total trial time: "
                      f"{c.trial_time_s:.1f} s.")]
    if c.full is None:
        blocks.append(("p", f"{_count(c.trials, 'COMPLETE or PRUNED trial')} trained {_count(c.trained, 'epoch')}; "
                            f"the budget's epochs per trial are unknown (no spec), so the saving cannot be counted."))
    else:
        blocks.append(("table", ["", "epochs"], [
            [f"trained by the {c.trials} COMPLETE and PRUNED trials", str(c.trained)],
            [f"the same trials each run to budget.epochs ({c.budget_epochs})", str(c.full)],
            ["saved by the pruner", f"{c.saved} ({c.saved_percent:.1f}%)" if c.full else "0"]]))
        if c.full:
            blocks.append(_picture(plots.compute_bars, c.trained, c.full, alt="epochs trained against the budget"))
    blocks.append(("p", f"Total trial time: {c.trial_time_s:.1f} s (the sum of every finished trial's duration, "
                        f"FAILED ones included; workers running at once overlap)."))
    return blocks


def leaderboard_section(rows: list[Row], top: int, metric: str) -> list[Block]:
    if not rows:
        return [("p", "No trial is ranked yet: none is COMPLETE, and no PRUNED trial reported a value.")]
    header, cells, constant = table(rows[:top], metric)
    blocks: list[Block] = [("p", f"The best {_count(len(cells), 'trial')}: COMPLETE ones by {metric}, then PRUNED "
                                 f"ones by the last value they reported. FAILED and RUNNING trials are not ranked."),
                           ("table", header, cells)]
    if constant:
        blocks.append(("p", "Same in all: " + ", ".join(f"{k}={format_value(v)}" for k, v in constant.items())))
    return blocks


def seeds_section(study) -> list[Block]:
    verdict = StudyRecord(study).seed_verdict
    if not verdict:
        return [("p", f"No seed comparison yet; run `hpo retrain {study.study_name} --seeds 3`.")]
    header = ["", "trial", "seeds", verdict.get("metric", "test_accuracy"), "mean", "std"]
    cells = []
    for role in ("baseline", "best"):
        group = verdict.get(role)
        if group:
            cells.append([role, str(group.get("trial")), ", ".join(map(str, verdict.get("seeds", []))),
                          ", ".join(f"{v:.4f}" for v in group.get("values", [])), f"{group['mean']:.4f}",
                          f"{group['std']:.4f}"])
    blocks: list[Block] = [("table", header, cells)]
    difference = verdict.get("difference")
    if difference:
        blocks.append(("p", f"Best minus baseline: {difference['mean']:+.4f}, "
                            f"{100 * difference.get('confidence', 0.95):g}% interval [{difference['low']:+.4f}, "
                            f"{difference['high']:+.4f}] ({difference.get('method', '')}), "
                            f"{verdict.get('epochs')} epochs each."))
    blocks.append(("p", str(verdict.get("sentence", ""))))
    blocks.append(_picture(plots.seed_strip, verdict, alt="test values per seed"))
    return blocks


def retrains_section(results: list[dict], source: str, name: str, metric: str | None = None) -> list[Block]:
    if not results:
        where = "neither in the study nor in an MLflow store" if source == "none" else f"in the study; {source}"
        return [("p", f"No retrain recorded ({where}); run `hpo retrain {name}`.")]
    where = "the MLflow retrain runs (the study predates retrain_results)" if source == "mlflow" else "the study"
    return [("p", f"{_count(len(results), 'retrain')}, oldest first, read from {where}."),
            ("table", *retrain_table(results, metric))]


def spec_section(study) -> list[Block]:
    import yaml

    raw = StudyRecord(study).spec
    if raw is None:
        return [("p", "The study has no study file recorded (it was not created by hpo run).")]
    return [("pre", yaml.safe_dump(dict(raw), sort_keys=False))]


def sections(study, tracking_uri: str | None, top: int, print_line: Callable[[str], None]) -> dict[str, list]:
    """Every section's blocks, in SECTIONS' order; a progress line as each is done."""
    spec = spec_of(study)
    metric = StudyRecord(study).metric
    rows = ranked(study)
    results, source = retrains(study, tracking_uri)
    makers = {
        "study": lambda: study_section(study, spec, metric),
        "pareto": lambda: pareto_section(study),
        "history": lambda: history_section(study, metric),
        "importances": lambda: [_picture(plots.importances, study, metric, alt="parameter importances")],
        "parameters": lambda: parameters_section(study, metric),
        "curves": lambda: curves_section(study, rows, top, metric),
        "compute": lambda: compute_section(compute_of(study, spec.budget.epochs if spec else None),
                                           pruned=not is_multi_objective(study)),
        "leaderboard": lambda: leaderboard_section(rows, top, metric),
        "seeds": lambda: seeds_section(study),
        "retrains": lambda: retrains_section(results, source, study.study_name, metric),
        "spec": lambda: spec_section(study),
    }
    done = {}
    for key, title in SECTIONS.items():
        if key == "pareto" and not is_multi_objective(study):  # one objective: no front
            continue
        done[key] = makers[key]()
        print_line(f"  {title}")
    return done


# --- rendering ---------------------------------------------------------------------------------------------

STYLE = """body{font-family:sans-serif;max-width:70em;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
th{background:#f0f0f0}img{display:block;max-width:100%;margin:.5em 0}pre{background:#f6f6f6;padding:.6em}
section{border-top:1px solid #ddd;margin-top:1.5em}"""


def _html_block(block: Block) -> str:
    kind, *rest = block
    if kind == "p":
        return f"<p>{html.escape(rest[0])}</p>"
    if kind == "pre":
        return f"<pre>{html.escape(rest[0])}</pre>"
    if kind == "img":
        return f'<img src="{rest[0]}" alt="{html.escape(rest[1])}">'
    header, cells = rest
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header) if any(header) else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def to_html(name: str, done: dict[str, list]) -> str:
    parts = [f'<section id="{key}"><h2>{html.escape(SECTIONS[key])}</h2>'
             + "\n".join(_html_block(b) for b in blocks) + "</section>" for key, blocks in done.items()]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>hpo report: {html.escape(name)}'
            f'</title><style>{STYLE}</style></head><body><h1>hpo report: {html.escape(name)}</h1>\n'
            + "\n".join(parts) + "\n</body></html>\n")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|") or " "


def _md_block(block: Block, picture: Callable[[str], str]) -> str:
    kind, *rest = block
    if kind == "p":
        return rest[0]
    if kind == "pre":
        return f"```yaml\n{rest[0]}```"
    if kind == "img":
        return f"![{rest[1]}]({picture(rest[0])})"
    header, cells = rest
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in cells])


def to_markdown(name: str, done: dict[str, list], picture: Callable[[str], str]) -> str:
    """The report in Markdown; ``picture(data URI)`` writes a picture beside it and returns its relative path."""
    parts = [f"# hpo report: {name}"]
    for key, blocks in done.items():
        parts.append(f"## {SECTIONS[key]}")
        parts += [_md_block(block, picture) for block in blocks]
    return "\n\n".join(parts) + "\n"


def write_report(study, output: Path, tracking_uri: str | None, top: int,
                 print_line: Callable[[str], None]) -> tuple[Path, Path]:
    """Write ``output`` (HTML, one file) and the Markdown beside it (same stem, ``.md``) with its pictures as
    PNG files in ``STEM-pictures/``; returns the two reports' paths."""
    import base64
    import urllib.parse

    done = sections(study, tracking_uri, top, print_line)
    markdown = output.with_suffix(".md")
    pictures = output.with_name(f"{output.stem}-pictures")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(to_html(study.study_name, done), encoding="utf-8")
    written: list[Path] = []

    if pictures.is_dir():  # the pictures of an earlier report under this name
        for old in pictures.glob("[0-9][0-9].png"):
            old.unlink()

    def picture(uri: str) -> str:
        pictures.mkdir(exist_ok=True)
        path = pictures / f"{len(written) + 1:02d}.png"
        path.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
        written.append(path)
        return urllib.parse.quote(f"{pictures.name}/{path.name}")  # a name with spaces or brackets stays a link

    markdown.write_text(to_markdown(study.study_name, done, picture), encoding="utf-8")
    return output, markdown
