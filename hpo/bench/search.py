"""``hpo bench --search STUDY``: how much compute each search strategy spends to reach a good model.

The study runs under each strategy with its own trial budget, once per seed (``--seeds``, at least 5 for a
figure worth quoting), each run ``hpo run --no-retrain --no-tracking`` in a fresh storage:

    study          the study's own sampler and pruner
    tpe+hyperband  TPE (the study's start-up trials where it uses TPE) and the hyperband pruner
    tpe            TPE without pruning
    random         random sampling without pruning: the reference, what trying configurations costs

The target is the best validation value any run found, less ``--tolerance`` (in the metric's units, e.g. 0.005
= half a point of accuracy). For each run: the epochs trained (pruned trials count the epochs they trained)
and the wall time until a trial first reached the target, the final best, and the anytime curve (best so far
against epochs spent). Per strategy: the median and the spread (lowest, highest) over the seeds, and the
median epochs to the target as a fraction of random search's. The picture draws each strategy's median curve
with its spread. A run that never reached the target counts as not reached, and the median of a strategy
that reached it in fewer than half its runs is "not reached".

On a small validation split one lucky run can set a target nobody else reaches, so each strategy is also
measured against random search's own quality: the median of its runs' final best values ("random's
final"). The epochs a strategy needs to reach that, as a fraction of the epochs random search spends in all
to end there, is the figure that says whether a strategy finds what random search finds with less compute.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

STRATEGIES = ("study", "tpe+hyperband", "tpe", "random")


@dataclass(frozen=True)
class Run:
    strategy: str
    seed: int
    wall_s: float
    epochs: int  # in all
    best: float
    epochs_to_target: int | None
    seconds_to_target: float | None
    curve: list  # [epochs spent, best so far] after each finished trial
    epochs_to_randoms_final: int | None = None  # to random search's median final best


def _first_reaching(curve: list, quality: float, maximize: bool) -> int | None:
    """The epochs spent when the best so far first reached ``quality``."""
    return next((spent for spent, best in curve if (best >= quality if maximize else best <= quality)), None)


def _overrides(strategy: str, spec) -> list[str]:
    startup = spec.sampler.args.get("n_startup_trials") if spec.sampler.name == "tpe" else None
    tpe = "{name: tpe" + (f", n_startup_trials: {startup}" if startup is not None else "") + "}"
    return {"study": [],
            "tpe+hyperband": ["--set", f"sampler={tpe}", "--set", "pruner={name: hyperband}"],
            "tpe": ["--set", f"sampler={tpe}", "--set", "pruner={name: none}"],
            "random": ["--set", "sampler={name: random}", "--set", "pruner={name: none}"]}[strategy]


def _one_run(study_file: str, spec, strategy: str, seed: int, folder: Path) -> tuple[float, list]:
    """(wall seconds, the run's finished trials in the order they finished)."""
    import optuna

    name = f"{strategy.replace('+', '-')}-{seed}"
    command = [sys.executable, "-m", "hpo", "run", study_file, "--no-retrain", "--no-tracking", "--quiet",
               "--storage", f"sqlite:///{folder}/bench.db", "--set", f"name={name}", "--set", f"seed={seed}",
               *_overrides(strategy, spec)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/bench.db")
    finished = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    return wall, sorted(finished, key=lambda t: t.datetime_complete)


def _measured(strategy: str, seed: int, wall: float, trials: list, maximize: bool, target: float) -> Run:
    from optuna.trial import TrialState

    from hpo.study.record import TrialRecord

    better = max if maximize else min
    reached = (lambda v: v >= target) if maximize else (lambda v: v <= target)
    start = min(t.datetime_start for t in trials)
    spent, best, curve, to_target, seconds = 0, None, [], None, None
    for trial in trials:
        spent += TrialRecord(trial).epochs
        if trial.state == TrialState.COMPLETE:
            best = trial.value if best is None else better(best, trial.value)
            if to_target is None and reached(trial.value):
                to_target, seconds = spent, (trial.datetime_complete - start).total_seconds()
        if best is not None:
            curve.append([spent, best])
    return Run(strategy, seed, wall, spent, best, to_target, seconds, curve)


def _with_randoms_final(run: Run, quality: float | None, maximize: bool) -> Run:
    return run if quality is None else replace(run, epochs_to_randoms_final=_first_reaching(run.curve, quality,
                                                                                            maximize))


def _summary(runs: list[Run], reference: float | None, randoms_epochs: float | None = None) -> dict:
    def spread(values):
        present = [v for v in values if v is not None]
        if len(present) * 2 < len(values):  # reached in fewer than half the runs
            return None, (min(present) if present else None), (max(present) if present else None)
        ordered = sorted(values, key=lambda v: float("inf") if v is None else v)  # not reached: last
        return ordered[(len(ordered) - 1) // 2], min(present), max(present)

    epochs, low, high = spread([r.epochs_to_target for r in runs])
    seconds, _, _ = spread([r.seconds_to_target for r in runs])
    to_final, final_low, final_high = spread([r.epochs_to_randoms_final for r in runs])
    return {"epochs_to_target": epochs, "epochs_to_target_low": low, "epochs_to_target_high": high,
            "seconds_to_target": seconds, "reached": sum(r.epochs_to_target is not None for r in runs),
            "runs": len(runs), "best": statistics.median(r.best for r in runs),
            "best_low": min(r.best for r in runs), "best_high": max(r.best for r in runs),
            "epochs": statistics.median(r.epochs for r in runs), "wall_s": statistics.median(r.wall_s for r in runs),
            "of_random": (epochs / reference if epochs is not None and reference else None),
            "epochs_to_randoms_final": to_final, "epochs_to_randoms_final_low": final_low,
            "epochs_to_randoms_final_high": final_high,
            "reached_randoms_final": sum(r.epochs_to_randoms_final is not None for r in runs),
            "of_randoms_epochs": (to_final / randoms_epochs if to_final is not None and randoms_epochs else None)}


def bench_search(study_file: str, seeds: int = 5, tolerance: float = 0.005, output: str | None = None,
                 strategies=STRATEGIES, print_line=print) -> dict:
    """Run the study under each strategy and seed (see the module); returns the numbers, draws the picture."""
    from hpo.spec.study_file import load_study
    from hpo.study.record import TrialRecord

    spec = load_study(study_file)
    maximize = spec.direction == "maximize"
    raw: list[tuple[str, int, float, list]] = []
    with tempfile.TemporaryDirectory(prefix="hpo-bench-search-") as tmp:
        for strategy in strategies:
            for seed in range(seeds):
                wall, trials = _one_run(str(Path(study_file).resolve()), spec, strategy, seed, Path(tmp))
                raw.append((strategy, seed, wall, trials))
                print_line(f"  {strategy:14s} seed {seed}: {len(trials)} trials, "
                           f"{sum(TrialRecord(t).epochs for t in trials)} epochs, {wall:.1f}s")
        values = [t.value for _, _, _, trials in raw for t in trials if t.value is not None]
        found = max(values) if maximize else min(values)
        target = found - tolerance if maximize else found + tolerance
        runs = [_measured(s, seed, wall, trials, maximize, target) for s, seed, wall, trials in raw]
    result = summarised(runs, strategies, maximize, {
        "study": spec.name, "study_file": str(study_file), "metric": spec.metric, "direction": spec.direction,
        "seeds": seeds, "trials": spec.budget.trials, "epochs_per_trial": spec.budget.epochs,
        "tolerance": tolerance, "best_found": found, "target": target})
    for line in table_lines(result):
        print_line(line)
    if output:
        draw(result, Path(output))
        result["picture"] = str(output)
        print_line(f"picture written to {output}")
    return result


def summarised(runs: list[Run], strategies, maximize: bool, about: dict) -> dict:
    """``about`` (the study, the target, ...) with each strategy's summary and every run, measured also
    against random search's final (see the module)."""
    finals = [r.best for r in runs if r.strategy == "random" and r.best is not None]
    randoms_final = statistics.median(finals) if finals else None
    runs = [_with_randoms_final(r, randoms_final, maximize) for r in runs]
    by_strategy = {s: [r for r in runs if r.strategy == s] for s in strategies}
    reference = _summary(by_strategy["random"], None)["epochs_to_target"] if "random" in by_strategy else None
    randoms_epochs = statistics.median(r.epochs for r in by_strategy["random"]) if "random" in by_strategy else None
    return {**about, "randoms_final": randoms_final,
            "strategies": {s: _summary(rs, reference, randoms_epochs) for s, rs in by_strategy.items()},
            "runs": [asdict(r) for r in runs]}


def table_lines(result: dict) -> list[str]:
    def shown(value, fmt="{:.0f}"):
        return "not reached" if value is None else fmt.format(value)

    def span(s, key):
        return f"{shown(s[key])} ({shown(s[key + '_low'])}-{shown(s[key + '_high'])})"

    final, randoms_final_header = result.get("randoms_final"), "to random's final (low-high)"
    lines = [f"{result['study']}: {result['trials']} trials x {result['epochs_per_trial']} epochs, {result['seeds']} "
             f"seeds; target {result['metric']} {result['target']:.4f} (the best found, {result['best_found']:.4f}, "
             f"within {result['tolerance']:g})" + (f"; random's final {final:.4f} (the median of its runs' best)"
                                                     if final is not None else ""),
             f"  {'strategy':14s} {'epochs to target (low-high)':>28s} {'of random':>10s} {'s to target':>12s} "
             f"{'reached':>8s} {randoms_final_header:>29s} {'of its epochs':>13s} {'reached':>8s} "
             f"{'final best (low-high)':>24s} {'epochs':>7s} {'wall':>7s}"]
    for name, s in result["strategies"].items():
        lines.append(f"  {name:14s} {span(s, 'epochs_to_target'):>28s} {shown(s['of_random'], '{:.2f}x'):>10s} "
                     f"{shown(s['seconds_to_target'], '{:.1f}s'):>12s} {s['reached']:>4d}/{s['runs']:<3d} "
                     f"{span(s, 'epochs_to_randoms_final'):>29s} {shown(s['of_randoms_epochs'], '{:.2f}x'):>13s} "
                     f"{s['reached_randoms_final']:>4d}/{s['runs']:<3d} "
                     f"{s['best']:.4f} ({s['best_low']:.4f}-{s['best_high']:.4f}) {s['epochs']:7.0f} "
                     f"{s['wall_s']:6.1f}s")
    return lines


def draw(result: dict, path: Path) -> None:
    """Best so far against epochs spent: each strategy's median over the seeds, its spread shaded."""
    by_strategy: dict[str, list[Run]] = {}
    for run in result["runs"]:
        by_strategy.setdefault(run["strategy"], []).append(Run(**run))
    from hpo.track.pictures import FIGURE_DPI, _pyplot

    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(8, 4.5))
    most = max(r.epochs for rs in by_strategy.values() for r in rs)
    grid = list(range(0, most + 1, max(1, most // 200)))
    for name, runs in by_strategy.items():
        rows = []
        for run in runs:
            best_at, values = None, []
            points = iter(run.curve)
            point = next(points, None)
            for epoch in grid:
                while point is not None and point[0] <= epoch:
                    best_at = point[1]
                    point = next(points, None)
                values.append(best_at)
            rows.append(values)
        columns = [[v for v in column if v is not None] for column in zip(*rows)]
        end = max(run.epochs for run in runs)  # a run that ended keeps its best; none goes on past the longest
        kept = [(e, c) for e, c in zip(grid, columns) if len(c) == len(rows) and e <= end]
        if not kept:
            continue
        xs = [e for e, _ in kept]
        line, = axis.plot(xs, [statistics.median(c) for _, c in kept], label=name)
        axis.plot(xs[-1:], [statistics.median(kept[-1][1])], "o", color=line.get_color(), markersize=4)
        axis.fill_between(xs, [min(c) for _, c in kept], [max(c) for _, c in kept], color=line.get_color(),
                          alpha=0.15)
    axis.axhline(result["target"], color="grey", linestyle="--", linewidth=0.8,
                 label=f"target {result['target']:.4f}")
    if result.get("randoms_final") is not None:
        axis.axhline(result["randoms_final"], color="grey", linestyle=":", linewidth=0.8,
                     label=f"random's final {result['randoms_final']:.4f}")
    axis.set_xlabel("epochs spent")
    axis.set_ylabel(f"best {result['metric']} so far")
    axis.set_title(f"{result['study']}: median of {result['seeds']} seeds, spread shaded", fontsize=10)
    axis.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FIGURE_DPI)
    plt.close(fig)
