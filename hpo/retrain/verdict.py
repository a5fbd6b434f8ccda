"""The seed comparison: does the best trial really beat the baseline, or did it draw a lucky seed?

``hpo retrain STUDY --seeds N`` (or ``budget.retrain.seeds: N``) retrains the best trial and the baseline
(trial 0, the study's first enqueued recipe) with the same N fresh seeds on the same budget, and judges the
difference of their test accuracies with a Welch t interval: two independent samples that may differ in
spread, N small, no normal approximation. The seeds are fresh because the search chose the best trial partly
for the luck of its own seed; both arms get the same ones so neither is dealt better draws.

This module is the statistics and the verdict only (no torch, no MLflow): ``hpo/retrain/seeds.py`` trains the
runs, ``hpo/report/page.py`` and ``hpo show`` read the verdict the study keeps (``StudyRecord.seed_verdict``).

Example::

    >>> v = judge(best=(3, [0.975, 0.972, 0.978]), baseline=(0, [0.961, 0.958, 0.966]), epochs=4,
    ...           seeds=[10007, 20007, 30007])
    >>> v["sentence"]
    'the best (trial 3) beats the baseline (trial 0) by 1.3 ± 0.8 points of test_accuracy at 3 seeds (95% Welch t interval)'
"""

from __future__ import annotations

import math
import statistics

CONFIDENCE = 0.95
SEED_STRIDE = 10_000  # group seeds are study seed + k * stride: far from the trials' seeds (study seed + number)


def group_seeds(study_seed: int, n: int) -> list[int]:
    """The N seeds of a seed comparison: the same for both arms and for every rerun of the study."""
    return [study_seed + SEED_STRIDE * (k + 1) for k in range(n)]


def welch_interval(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): the Welch t confidence interval of the difference of the means.

    Needs two values in each sample. When neither sample varies, the interval is the difference itself."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a Welch interval needs at least 2 values per sample, got {len(a)} and {len(b)}")
    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)  # squared standard errors
    if va + vb == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))  # Welch-Satterthwaite
    half = stats.t.ppf((1 + confidence) / 2, df) * math.sqrt(va + vb)
    return diff, diff - half, diff + half


def _arm(trial: int, values: list[float], run_ids: list[str | None]) -> dict:
    return {"trial": trial, "values": list(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "run_ids": list(run_ids)}


def judge(best: tuple[int, list[float]], baseline: tuple[int, list[float]] | None, epochs: int, seeds: list[int],
          metric: str = "test_accuracy", group: str = "", run_ids: dict | None = None,
          no_baseline: str = "the study enqueues no recipe", label: str = "the best") -> dict:
    """The verdict of a seed comparison, a plain dict (it is stored as a study attribute and in MLflow).

    ``best`` and ``baseline`` are (trial number, one test value per seed); ``baseline`` is None when the study
    has no enqueued recipe or when the recipe is the best trial (``no_baseline`` says which). ``label`` names
    the first arm in the sentence: "the best", or "the chosen" for a trial picked with ``--trial``."""
    run_ids = run_ids or {}
    best_arm = _arm(best[0], best[1], run_ids.get("best", [None] * len(best[1])))
    verdict = {"group": group, "epochs": epochs, "seeds": list(seeds), "metric": metric, "best": best_arm,
               "baseline": None, "difference": None, "confidence": CONFIDENCE}
    n = len(seeds)
    if baseline is None:
        verdict["sentence"] = (f"no baseline to compare ({no_baseline}): trial {best[0]} scored {_points(best_arm['mean'])} ± "
                               f"{_points(best_arm['std'])} points of {metric} over {n} seeds")
        return verdict
    verdict["baseline"] = _arm(baseline[0], baseline[1], run_ids.get("baseline", [None] * len(baseline[1])))
    diff, low, high = welch_interval(best[1], baseline[1])
    verdict["difference"] = {"mean": diff, "low": low, "high": high, "confidence": CONFIDENCE, "method": "Welch t"}
    verdict["sentence"] = sentence(best[0], baseline[0], diff, low, high, n, metric, label)
    return verdict


def sentence(best: int, baseline: int, diff: float, low: float, high: float, n: int, metric: str,
             label: str = "the best") -> str:
    """One plain sentence: who wins, by how much (in points, i.e. hundredths), or that nobody can tell."""
    half = (high - low) / 2
    interval = f"({CONFIDENCE:.0%} Welch t interval)"
    if low > 0:
        return (f"{label} (trial {best}) beats the baseline (trial {baseline}) by {_points(diff)} ± {_points(half)} "
                f"points of {metric} at {n} seeds {interval}")
    if high < 0:
        winner = "the search's winner" if label == "the best" else f"trial {best}"
        return (f"the baseline (trial {baseline}) beats {label} (trial {best}) by {_points(-diff)} ± "
                f"{_points(half)} points of {metric} at {n} seeds {interval}: {winner} does not hold up")
    return (f"{label} (trial {best}) is not distinguishable from the baseline (trial {baseline}) at {n} seeds: "
            f"{_points(diff)} ± {_points(half)} points of {metric} {interval}")


def _points(fraction: float) -> str:
    return f"{fraction * 100:.1f}"


def describe(verdict: dict) -> list[str]:
    """The verdict as console lines (``hpo retrain --seeds``)."""
    metric, n = verdict["metric"], len(verdict["seeds"])
    lines = [f"seed comparison: {n} seeds x {verdict['epochs']} epochs, {metric} on the test split"]
    for role in ("best", "baseline"):
        arm = verdict[role]
        if arm is not None:
            values = ", ".join(f"{v:.4f}" for v in arm["values"])
            lines.append(f"  {role:8s} trial {arm['trial']:<4d} {arm['mean']:.4f} ± {arm['std']:.4f}  ({values})")
    d = verdict["difference"]
    if d is not None:
        lines.append(f"  difference {_points(d['mean'])} points, {d['confidence']:.0%} {d['method']} interval "
                     f"{_points(d['low'])} to {_points(d['high'])}")
    lines.append(verdict["sentence"])
    return lines


def median_member(members: list[tuple[str, float]]) -> str:
    """The run id whose value is the median of a seed group's arm (the lower of the two middle ones for an
    even count: promoting a group's model should never pick its luckier half by default)."""
    ranked = sorted(members, key=lambda member: member[1])
    return ranked[(len(ranked) - 1) // 2][0]
