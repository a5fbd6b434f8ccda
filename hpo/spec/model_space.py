"""The model is searched too: ``model.name`` as choices, and any model argument as a range or choices.

    model:
      name: [digits_cnn, torchvision/mobilenet_v3_small, mynets:TinyNet]   # sampled as the parameter "model"
      width: [4, 8, 16]                   # "model.width", sampled only when the chosen model takes width
      dropout: {low: 0.0, high: 0.5}      # "model.dropout", likewise
      pretrained: weights.pth             # a plain value is fixed (given to each model that takes it)

An argument is sampled only for a model that takes it, as momentum only for sgd and rmsprop; the syntax is
``search:``'s (a list is choices: a fixed list value is written ``{choices: [[2, 2]]}``). Each trial's model
is a plain :class:`hpo.spec.study_file.ModelSpec` (one name, its arguments), recorded in Optuna's params,
MLflow's, the leaderboard and the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from hpo.core.errors import SpecError, shown
from hpo.spec.space import RANGE_KEYS, Choice, FloatRange, IntRange, Param, choices_of, describe_param, suggest_param

NAME_PARAM = "model"  # the Optuna parameter that holds the chosen model's name
PREFIX = "model."  # before each searched argument's name: model.width


def model_params(trial_params: Mapping[str, Any]) -> dict[str, Any]:
    """The model's part of a trial's params (``model``, ``model.width``, ...): none unless it is searched."""
    return {k: v for k, v in trial_params.items() if k == NAME_PARAM or k.startswith(PREFIX)}


@dataclass(frozen=True)
class ModelSpace:
    candidates: tuple[str, ...]  # the model names a trial chooses from (one: the name is fixed)
    fixed: Mapping[str, Any]  # arguments with one value, each given to the candidates that take it
    searched: Mapping[str, Param]  # arguments sampled per trial
    takes: Mapping[str, tuple[str, ...]]  # each candidate's arguments, among fixed and searched

    def suggest(self, trial) -> tuple[str, dict[str, Any]]:
        """This trial's model name and arguments, sampled."""
        name = self.candidates[0] if len(self.candidates) == 1 else \
            trial.suggest_categorical(NAME_PARAM, list(self.candidates))
        args = {k: v for k, v in self.fixed.items() if k in self.takes[name]}
        for arg, param in self.searched.items():
            if arg in self.takes[name]:
                args[arg] = suggest_param(trial, PREFIX + arg, param)
        return name, args

    def resolve(self, trial_params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """A finished trial's model name and arguments, from its params."""
        name = trial_params.get(NAME_PARAM, self.candidates[0])
        args = {k: v for k, v in self.fixed.items() if k in self.takes[name]}
        args.update({arg: trial_params[PREFIX + arg] for arg in self.searched
                     if arg in self.takes[name] and PREFIX + arg in trial_params})
        return name, args

    def describe(self) -> list[str]:
        lines = [f"{NAME_PARAM:16s} choice {list(self.candidates)}"] if len(self.candidates) > 1 else []
        for arg, p in self.searched.items():
            users = [n for n in self.candidates if arg in self.takes[n]]
            when = f"  (only for {', '.join(users)})" if len(users) < len(self.candidates) else ""
            lines.append(describe_param(PREFIX + arg, p, when))
        return lines


def is_searched(raw: Any) -> bool:
    """Whether a model argument's value in a study file is a range or choices rather than a value."""
    return isinstance(raw, list) or (isinstance(raw, dict) and bool(set(raw) & (RANGE_KEYS | {"choices"})))


def parse_candidates(raw: Any, source: str) -> tuple[str, ...]:
    """``model.name``: a name, a list of names, or ``{choices: [...]}``."""
    if isinstance(raw, dict) and set(raw) == {"choices"}:
        raw = raw["choices"]
    names = tuple(raw) if isinstance(raw, list) else (raw,)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise SpecError(source, "model.name", f"must be a model name or a non-empty list of them, got {shown(raw)}")
    if len(set(names)) != len(names):
        raise SpecError(source, "model.name", f"has duplicates: {shown(list(names))}")
    return names


def parse_searched(raw: Any, source: str, field: str) -> Param:
    """A model argument's range (``{low, high, log?, step?}``: an int range when both ends are integers) or
    choices (a list, or ``{choices: [...]}``)."""
    if isinstance(raw, list):
        raw = {"choices": raw}
    if "choices" in raw:
        choices = choices_of(raw, source, field)
        if not all(isinstance(c, (str, int, float, bool)) or c is None for c in choices):
            raise SpecError(source, f"{field}.choices", f"must be numbers, strings, true/false or null, got "
                                                        f"{shown(choices)}")
        if len(set(map(repr, choices))) != len(choices):
            raise SpecError(source, f"{field}.choices", f"has duplicates: {shown(choices)}")
        return Choice(tuple(choices))
    unknown = sorted(set(raw) - RANGE_KEYS)
    if unknown:
        raise SpecError(source, f"{field}.{unknown[0]}", "unknown key; a range takes low, high, log, step "
                                                         "(or give choices: [...])")
    ends = []
    for key in ("low", "high"):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(source, f"{field}.{key}", f"must be a number, got {shown(value)}")
        ends.append(value)
    low, high = ends
    if low > high:
        raise SpecError(source, field, f"low ({low:g}) must be <= high ({high:g})")
    log, step = raw.get("log", False), raw.get("step")
    if not isinstance(log, bool):
        raise SpecError(source, f"{field}.log", f"must be true or false, got {shown(log)}")
    if log and low <= 0:
        raise SpecError(source, f"{field}.low", f"must be > 0 for a log-scale range, got {low:g}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0 or log):
        raise SpecError(source, f"{field}.step", f"must be a positive number (and no log), got {shown(step)}")
    if all(isinstance(v, int) for v in (low, high)) and (step is None or isinstance(step, int)):
        return IntRange(low, high, log, step or 1)
    return FloatRange(float(low), float(high), log, None if step is None else float(step))


def values_to_check(param: Param) -> list:
    """The values of a searched argument that a model's checks judge: a range's ends, every choice."""
    return list(param.choices) if isinstance(param, Choice) else [param.low, param.high]


def check_enqueued_model(values: Mapping[str, Any], space: ModelSpace, source: str, field: str) -> dict[str, Any]:
    """An enqueued recipe's model part: ``model`` one of the candidates, ``model.ARG`` inside its range or
    choices and taken by that model."""
    name = values.get(NAME_PARAM, space.candidates[0] if len(space.candidates) == 1 else None)
    if name not in space.candidates:
        raise SpecError(source, f"{field}.{NAME_PARAM}", f"must be one of {', '.join(space.candidates)}, got "
                                                          f"{shown(name)}")
    for key, value in values.items():
        if key == NAME_PARAM:
            continue
        arg = key[len(PREFIX):]
        param = space.searched.get(arg)
        if param is None:
            raise SpecError(source, f"{field}.{key}", f"is not searched; searched: "
                            f"{', '.join(PREFIX + a for a in space.searched) or 'none'}")
        if arg not in space.takes[name]:
            raise SpecError(source, f"{field}.{key}", f"is never used: {name} does not take {arg}")
        inside = value in param.choices if isinstance(param, Choice) else (
            isinstance(value, (int, float)) and not isinstance(value, bool) and param.low <= value <= param.high
            and (isinstance(param, FloatRange) or float(value).is_integer()))
        if not inside:
            allowed = f"one of {list(param.choices)}" if isinstance(param, Choice) else \
                f"within [{param.low:g}, {param.high:g}]"
            raise SpecError(source, f"{field}.{key}", f"must be {allowed}, got {shown(value)}")
    return dict(values) if NAME_PARAM in values or len(space.candidates) == 1 else {NAME_PARAM: name, **values}
