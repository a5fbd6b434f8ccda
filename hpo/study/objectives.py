"""A study's objectives: its metric alone, or its metric and what the network costs, searched for a Pareto front.

``objectives: [val_accuracy, params]`` makes a multi-objective study: each COMPLETE trial has one value per
objective (Optuna's ``values``), the first the study's metric, the others costs, all minimized:

    params       the network's parameters (trainable or not)
    flops        floating-point operations of one forward pass on one image (torch's FlopCounterMode:
                 2 per multiply-add, the operations torch knows how to count)
    latency_ms   milliseconds of one forward pass on one image (batch 1, float32, eval mode, no autograd)
                 on the trial's device: the median of 20 timed passes after 3 untimed ones

Optuna does not prune a study with several objectives (``Trial.report`` refuses them): each trial trains its
whole budget, and a study file that names a pruner is refused. Where one trial must stand for the study (the
retrain of ``hpo run``, the best so far, the leaderboard's order) it is the trial best on the first objective,
ties going to the cheaper (then the earlier) one: always a point of the front. ``hpo retrain --trial N`` and
``hpo promote --trial N`` take any other point.
"""

from __future__ import annotations

import statistics
import time

from hpo.core.errors import UserError

# cost -> what it measures (all are minimized)
COSTS = {"params": "parameters of the network",
         "flops": "floating-point operations of one forward pass on one image",
         "latency_ms": "milliseconds of one forward pass on one image (batch 1) on the trial's device"}
LATENCY_WARMUP, LATENCY_REPEATS = 3, 20


def score(trial) -> float | None:
    """The trial's value of the first objective (the study's metric), None when it has none."""
    return trial.values[0] if trial.values else None


def maximizes(study) -> bool:
    """Whether the study's first objective is maximized."""
    return study.directions[0].name == "MAXIMIZE"


def is_multi_objective(study) -> bool:
    return len(study.directions) > 1


def shown_cost(value: float) -> str:
    """A cost as tables print it: counts whole (params 13726), times to 4 significant digits."""
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def cost_text(names, values) -> str:
    """" params 13726 latency_ms 0.3112": a trial's costs, for a console line ("" for none)."""
    return "".join(f" {name} {shown_cost(value)}" for name, value in zip(names, values))


def objective_names(study) -> list[str]:
    """The study's objectives as ``hpo run`` named them (Optuna's metric names), else "objective N"."""
    return list(study.metric_names or [f"objective {i}" for i in range(len(study.directions))])


def best_trial(study):
    """The COMPLETE trial best on the first objective (ties: lower costs, then the earlier trial), or None."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    return min(done, key=_ranking(study)) if done else None


def _ranking(study):
    """The order trials stand in: best on the first objective, then the cheaper, then the earlier."""
    sign = -1 if maximizes(study) else 1
    return lambda t: (sign * t.values[0], *t.values[1:], t.number)


def pareto_front(study) -> list:
    """The trials no other COMPLETE trial beats on every objective, best on the first objective first."""
    return sorted(study.best_trials, key=_ranking(study))


def chosen_trial(study, number: int | None):
    """Trial ``number`` (``--trial N``), which must be COMPLETE; by default :func:`best_trial`."""
    from optuna.trial import TrialState

    if number is None:
        best = best_trial(study)
        if best is None:
            raise UserError(f"study {study.study_name!r} has no COMPLETE trial to retrain; run `hpo run "
                            f"STUDY_FILE` until at least one trial completes")
        return best
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if trials.get(number) is not None and trials[number].state == TrialState.COMPLETE:
        return trials[number]
    complete = [t.number for t in trials.values() if t.state == TrialState.COMPLETE]
    front = [t.number for t in pareto_front(study)] if is_multi_objective(study) else []
    raise UserError(f"--trial {number}: study {study.study_name!r} has no COMPLETE trial {number}"
                    + (f" ({trials[number].state.name})" if number in trials else "")
                    + (f"; its Pareto front: trials {', '.join(map(str, front))}" if front else "")
                    + f"; its COMPLETE trials: {', '.join(map(str, complete[:20])) or 'none'}"
                    + (f" and {len(complete) - 20} more" if len(complete) > 20 else ""))


def measure_costs(model, names, channels: int, image_size: tuple[int, int], device) -> dict[str, float]:
    """The costs ``names`` of ``model`` (see the module), measured on ``device`` with one zero image."""
    import torch

    costs: dict[str, float] = {}
    if "params" in names:
        costs["params"] = float(sum(p.numel() for p in model.parameters()))
    if not {"flops", "latency_ms"} & set(names):
        return costs
    was_training = model.training
    model.eval()
    image = torch.zeros(1, channels, *image_size, device=device)
    try:
        with torch.no_grad():
            if "flops" in names:
                from torch.utils.flop_counter import FlopCounterMode

                with FlopCounterMode(display=False) as counter:
                    model(image)
                costs["flops"] = float(counter.get_total_flops())
            if "latency_ms" in names:
                costs["latency_ms"] = _latency_ms(model, image, device)
    finally:
        model.train(was_training)
    return costs


NETWORKS_COUNTED = 32  # a searched model's variants built to find its largest; more: not counted


def network_flops(spec, splits) -> float | None:
    """FLOPs of one image's forward pass through the study's largest network (of a searched model: the most
    of its variants, each candidate at the ends of its searched arguments), or None where torch cannot count
    them or there are more than ``NETWORKS_COUNTED`` variants. FlopCounterMode's first use imports
    torch._dynamo (about 0.85 s on this CPU), as building the first optimizer would anyway."""
    import torch

    variants = spec.model.variants()
    if len(variants) > NETWORKS_COUNTED:
        return None
    most = 0.0
    try:
        for candidate in variants:
            model = candidate.build(splits)
            most = max(most, measure_costs(model, ("flops",), splits.channels, splits.image_size,
                                           torch.device("cpu"))["flops"])
    except Exception:  # an operation FlopCounterMode cannot take: the rule for small steps does not apply
        return None
    return most or None


def _latency_ms(model, image, device) -> float:
    import torch

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(LATENCY_WARMUP):
        model(image)
    times = []
    for _ in range(LATENCY_REPEATS):
        synchronize()
        start = time.perf_counter()
        model(image)
        synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
