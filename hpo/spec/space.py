"""The search space: which hyperparameters exist, their rules, and how a trial samples them.

Each built-in hyperparameter (a field of :class:`hpo.train.hyperparams.Hyperparams`) is, in a study
file's ``search`` section, either fixed to a value or searched::

    search:
      lr: {low: 1.0e-4, high: 1.0e-1, log: true}   # float range (log scale)
      batch_size: [32, 64, 128]                     # categorical (short for {choices: [...]})
      optimizer: {choices: [adam, sgd]}
      momentum: {low: 0.8, high: 0.99}              # sampled only when the optimizer uses it
      weight_decay: {low: 1.0e-6, high: 1.0e-3, log: true}
      label_smoothing: 0.1                          # fixed

A range's type (float or int) is the hyperparameter's own; ranges take
``low``, ``high`` and optionally ``log`` and ``step``. Anything not named
keeps its default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

from hpo.data.policies import BINS as POLICY_BINS, OPS as POLICY_OPS, POLICIES
from hpo.data.transforms import MAX_JITTER
from hpo.core.errors import SpecError, shown
from hpo.train.hyperparams import Hyperparams  # the fields the knobs below describe
from hpo.train.optim import MOMENTUM_OPTIMIZERS, OPTIMIZERS, SCHEDULERS


@dataclass(frozen=True)
class Condition:
    """A hyperparameter applies only when another one passes ``test`` (``text`` says when, for humans)."""

    other: str
    test: Callable[[Any], bool]
    text: str


def when_in(other: str, values: tuple) -> Condition:
    return Condition(other, lambda v: v in values, f"{other} in {', '.join(map(str, values))}")


def when_positive(other: str) -> Condition:
    return Condition(other, lambda v: v > 0, f"{other} > 0")


@dataclass(frozen=True)
class Knob:
    """The rules for one hyperparameter: its type, its allowed values, when it applies."""

    kind: type
    help: str
    low: float | None = None  # allowed range (inclusive unless the *_open flag says otherwise)
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Callable[[], list[str]] | None = None
    only_when: Condition | None = None

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(self.choices())
        low = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = "" if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        kind = "an integer" if self.kind is int else "a number"
        return f"{kind} {' and '.join(p for p in (low, high) if p)}".strip()

    def check(self, value: Any) -> bool:
        if self.choices is not None:
            return isinstance(value, str) and value in self.choices()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not float(value).is_integer():
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return True


KNOBS: dict[str, Knob] = {
    "lr": Knob(float, "learning rate (the peak for onecycle)", low=0, low_open=True),
    "batch_size": Knob(int, "images per forward pass", low=1, high=65536),
    "optimizer": Knob(str, "optimizer", choices=OPTIMIZERS.names),
    "momentum": Knob(float, "momentum", low=0, high=1, high_open=True,
                     only_when=when_in("optimizer", MOMENTUM_OPTIMIZERS)),
    "weight_decay": Knob(float, "L2 weight decay", low=0),
    "scheduler": Knob(str, "learning-rate schedule, stepped per optimizer step", choices=SCHEDULERS.names),
    "warmup_epochs": Knob(int, "linear warm-up from lr/1000 before the schedule", low=0),
    "label_smoothing": Knob(float, "label smoothing of the cross-entropy loss", low=0, high=1, high_open=True),
    "grad_clip": Knob(float, "max gradient norm; 0 = off", low=0),
    "accumulation": Knob(int, "batches whose gradients add up to one optimizer step", low=1),
    "swa_start": Knob(int, "epoch from which SWA averages the weights (torch.optim.swa_utils); 0 = off", low=0),
    "swa_lr": Knob(float, "constant lr during SWA", low=0, low_open=True, only_when=when_positive("swa_start")),
    "ema_decay": Knob(float, "EMA of the weights, updated every step; 0 = off", low=0, high=1, high_open=True,
                      only_when=Condition("swa_start", lambda v: v == 0, "swa_start = 0")),
    "head_epochs": Knob(int, "two-phase fine-tuning: epochs training only the head (last Linear); 0 = off",
                        low=0),
    "head_lr": Knob(float, "lr of the head-only phase", low=0, low_open=True,
                    only_when=when_positive("head_epochs")),
    "crop_padding": Knob(int, "random crop after zero padding by this many pixels; 0 = off", low=0),
    "rrc_scale_min": Knob(float, "RandomResizedCrop: smallest area fraction; 1 = off", low=0, low_open=True,
                          high=1),
    "rrc_ratio_max": Knob(float, "RandomResizedCrop: aspect ratios in [1/r, r]", low=1,
                          only_when=Condition("rrc_scale_min", lambda v: v < 1, "rrc_scale_min < 1")),
    "hflip": Knob(float, "probability of a horizontal flip", low=0, high=1),
    "rotation": Knob(float, "random rotation in [-r, r] degrees", low=0, high=180),
    "jitter": Knob(float, "colour-jitter strength s: brightness/contrast/saturation 0.4s, hue 0.1s; 0 = off",
                   low=0, high=MAX_JITTER),
    "augment": Knob(str, "augmentation policy, a draw per image (TrivialAugmentWide, RandAugment)",
                    choices=lambda: list(POLICIES)),
    "randaugment_ops": Knob(int, "RandAugment: operations per image", low=1, high=len(POLICY_OPS),
                            only_when=when_in("augment", ("randaugment",))),
    "randaugment_magnitude": Knob(int, "RandAugment: magnitude bin of every operation", low=0, high=POLICY_BINS - 1,
                                  only_when=when_in("augment", ("randaugment",))),
    "erasing": Knob(float, "RandomErasing: probability of a rectangle of the mean colour per image; 0 = off",
                    low=0, high=1),
    "erasing_scale": Knob(float, "RandomErasing: largest area fraction (the smallest is 0.02)", low=0.02, high=1,
                          only_when=when_positive("erasing")),
    "mixup_alpha": Knob(float, "MixUp: Beta(alpha, alpha) blend of each batch with itself rolled by one; 0 = off",
                        low=0),
    "cutmix_alpha": Knob(float, "CutMix: Beta(alpha, alpha) share of each image kept, the rest pasted; 0 = off",
                         low=0),
    "mix_prob": Knob(float, "probability that a batch is mixed (MixUp or CutMix)", low=0, high=1),
    "cutmix_prob": Knob(float, "with MixUp and CutMix on: probability of CutMix for a mixed batch", low=0, high=1,
                        only_when=when_positive("cutmix_alpha")),
}
assert list(KNOBS) == [f.name for f in dataclasses.fields(Hyperparams)], "every hyperparameter needs a knob"
assert all(k.only_when is None or list(KNOBS).index(k.only_when.other) < list(KNOBS).index(name)
           for name, k in KNOBS.items()), "a condition must be decided before the knob it guards"


@dataclass(frozen=True)
class Fixed:
    value: Any


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False
    step: float | None = None


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False
    step: int = 1


@dataclass(frozen=True)
class Choice:
    choices: tuple


Param = Union[Fixed, FloatRange, IntRange, Choice]


# lr_scaling: the study's lr is the rate for REFERENCE_BATCH images, scaled to the images of each trial's optimizer
# step by (batch_size * accumulation / 256) (linear, Goyal et al. 2017) or its square root (sqrt).
REFERENCE_BATCH = 256
LR_SCALINGS = {"none": lambda ratio: 1.0, "linear": lambda ratio: ratio, "sqrt": math.sqrt}


@dataclass(frozen=True)
class SearchSpace:
    params: Mapping[str, Param]  # every knob, in KNOBS order; the unnamed ones Fixed at their default
    lr_scaling: str = "none"  # a key of LR_SCALINGS

    @property
    def searched(self) -> list[str]:
        return [name for name, p in self.params.items() if not isinstance(p, Fixed)]

    def largest(self, name: str):
        """The largest value ``name`` can take in this space."""
        param = self.params[name]
        return param.value if isinstance(param, Fixed) else max(param.choices) if isinstance(param, Choice) \
            else param.high

    def applies(self, name: str, decided: Mapping[str, Any]) -> bool:
        condition = KNOBS[name].only_when
        return condition is None or condition.test(decided[condition.other])

    def suggest(self, trial) -> Hyperparams:
        """Sample this trial's hyperparameters (conditional ones only where they apply)."""
        decided: dict[str, Any] = {}
        for name, param in self.params.items():
            if isinstance(param, Fixed) or not self.applies(name, decided):
                decided[name] = param.value if isinstance(param, Fixed) else getattr(Hyperparams, name)
            else:
                decided[name] = suggest_param(trial, name, param)
        return self.scaled(Hyperparams(**decided))

    def resolve(self, trial_params: Mapping[str, Any]) -> Hyperparams:
        """A finished trial's hyperparameters: its sampled params over the fixed ones and defaults."""
        values = {name: p.value for name, p in self.params.items() if isinstance(p, Fixed)}
        values.update({k: v for k, v in trial_params.items() if k in KNOBS})
        return self.scaled(Hyperparams(**values))

    def scaled(self, hp: Hyperparams) -> Hyperparams:
        """``hp`` with the effective learning rate: the study's lr (per 256 images under ``lr_scaling``)
        scaled to the batch size. Trials keep the study's lr as their Optuna param; the trainer, MLflow's
        ``lr`` param and the checkpoint get the effective one."""
        factor = self.lr_factor(hp)
        return hp if factor == 1.0 else dataclasses.replace(hp, lr=hp.lr * factor)

    def lr_factor(self, hp: Hyperparams) -> float:
        """What ``lr_scaling`` multiplies the study's lr by: from the images of one optimizer step (the batch
        size times the accumulation) against 256."""
        return LR_SCALINGS[self.lr_scaling](hp.batch_size * hp.accumulation / REFERENCE_BATCH)

    def recorded(self, hp: Hyperparams) -> dict[str, Any]:
        """What MLflow and the checkpoint record of ``scaled`` hyperparameters: every field (``lr`` the effective
        rate) and, under lr_scaling, the rule and the study's rate per 256 images."""
        return {**hp.as_dict(), **self.scaling_params(hp)}

    def scaling_params(self, hp: Hyperparams) -> dict[str, Any]:
        """The rule and the study's rate per 256 images behind an effective ``lr`` (nothing without lr_scaling)."""
        if self.lr_scaling == "none":
            return {}
        per_256 = hp.lr / self.lr_factor(hp)
        return {"lr_scaling": self.lr_scaling, f"lr_per_{REFERENCE_BATCH}": per_256}

    def grid(self) -> dict[str, list]:
        """The values a grid search visits; every searched parameter must be categorical or stepped."""
        grid = {}
        for name in self.searched:
            param = self.params[name]
            if isinstance(param, Choice):
                grid[name] = list(param.choices)
            elif isinstance(param, IntRange) and not param.log:
                grid[name] = list(range(param.low, param.high + 1, param.step))
            elif isinstance(param, FloatRange) and param.step is not None and not param.log:
                count = int(round((param.high - param.low) / param.step)) + 1
                grid[name] = [round(param.low + i * param.step, 12) for i in range(count)]
            else:
                raise ValueError(f"the grid sampler needs {name} as choices or a range with step, got {param}")
        return grid

    def describe(self) -> list[str]:
        lines = []
        for name, p in self.params.items():
            condition = KNOBS[name].only_when
            when = f"  (only when {condition.text})" if condition else ""
            if name == "lr" and self.lr_scaling != "none":
                when += f"  (per {REFERENCE_BATCH} images; lr_scaling {self.lr_scaling}: x (batch_size*accumulation/256)" + \
                        ("^0.5)" if self.lr_scaling == "sqrt" else ")")
            lines.append(describe_param(name, p, when))
        return lines


def suggest_param(trial, name: str, param: Param) -> Any:
    """Optuna's sample of a searched parameter (a range or choices)."""
    if isinstance(param, FloatRange):
        return trial.suggest_float(name, param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, IntRange):
        return trial.suggest_int(name, param.low, param.high, log=param.log, step=param.step)
    return trial.suggest_categorical(name, list(param.choices))


def describe_param(name: str, p: Param, when: str = "") -> str:
    """One line of ``hpo check``'s search space: the parameter, its kind and values, and when it applies."""
    if isinstance(p, Fixed):
        return f"{name:16s} fixed  {p.value!r}"
    if isinstance(p, Choice):
        return f"{name:16s} choice {list(p.choices)}{when}"
    kind = "float " if isinstance(p, FloatRange) else "int   "
    extra = (" log" if p.log else "") + (f" step {p.step:g}" if p.step not in (None, 1) else "")
    return f"{name:16s} {kind} [{p.low:g}, {p.high:g}]{extra}{when}"


# --- parsing from a study file ------------------------------------------------------------------

RANGE_KEYS = {"low", "high", "log", "step"}


def parse_lr_scaling(raw: Any, source: str) -> str:
    if not isinstance(raw, str) or raw not in LR_SCALINGS:
        raise SpecError(source, "lr_scaling", f"must be one of {', '.join(LR_SCALINGS)}, got {shown(raw)}")
    return raw


def parse_search(raw: Any, source: str, model_searched: bool = False, lr_scaling: str = "none") -> SearchSpace:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(source, "search", f"must be a mapping of hyperparameter names, got {shown(raw)}")
    unknown = sorted(set(raw) - set(KNOBS))
    if unknown:
        raise SpecError(source, f"search.{unknown[0]}", f"unknown hyperparameter; allowed: {', '.join(KNOBS)}")
    params: dict[str, Param] = {}
    for name, knob in KNOBS.items():
        params[name] = _parse_param(raw[name], knob, source, f"search.{name}") if name in raw \
            else Fixed(getattr(Hyperparams, name))
    space = SearchSpace(params, lr_scaling)
    if not space.searched and not model_searched:
        raise SpecError(source, "search", "the space is empty: search at least one of "
                        + ", ".join(KNOBS) + " with a range or choices, or search the model (model.name: [a, b], "
                        "or a model argument as a range)")
    for name in space.searched:
        condition = KNOBS[name].only_when
        if condition is not None and not any(map(condition.test, _extremes(params[condition.other]))):
            other = params[condition.other]
            given = (f"fixed to {other.value!r}" if isinstance(other, Fixed)
                     else f"one of {list(other.choices)}" if isinstance(other, Choice)
                     else f"within [{other.low:g}, {other.high:g}]")
            raise SpecError(source, f"search.{name}", f"is searched but never sampled: it applies only when "
                            f"{condition.text}, and {condition.other} is {given}")
    return space


def _extremes(param: Param) -> tuple:
    """The values of ``param`` that decide whether a condition can ever hold: all of a fixed value's or
    choices', a range's two ends (the conditions are thresholds: > 0, == 0, < 1)."""
    return (param.value,) if isinstance(param, Fixed) else param.choices if isinstance(param, Choice) \
        else (param.low, param.high)


def on_grid(value: float, param: FloatRange | IntRange) -> bool:
    """Whether ``value`` is one the range can sample: on its step grid from ``low`` (Optuna's rule)."""
    if not param.step:
        return True
    steps = (value - param.low) / param.step
    return abs(steps - round(steps)) <= 1e-8 * max(1.0, abs(steps))


def choices_of(raw: dict, source: str, field: str) -> list:
    """The list of ``{choices: [...]}``, refused unless it is the mapping's only key and a non-empty list."""
    if set(raw) != {"choices"}:
        raise SpecError(source, field, "give either choices or low/high, not both")
    choices = raw["choices"]
    if not isinstance(choices, list) or not choices:
        raise SpecError(source, f"{field}.choices", f"must be a non-empty list, got {shown(choices)}")
    return choices


def _parse_param(raw: Any, knob: Knob, source: str, field: str) -> Param:
    if isinstance(raw, list):
        raw = {"choices": raw}
    if not isinstance(raw, dict):
        return Fixed(_value(raw, knob, source, field))
    if "choices" in raw:
        choices = choices_of(raw, source, field)
        values = tuple(_value(c, knob, source, f"{field}.choices") for c in choices)
        if len(set(values)) != len(values):
            raise SpecError(source, f"{field}.choices", f"has duplicates: {shown(choices)}")
        return Choice(values)
    unknown = sorted(set(raw) - RANGE_KEYS)
    if unknown:
        raise SpecError(source, f"{field}.{unknown[0]}", "unknown key; a range takes low, high, log, step "
                        "(or give choices: [...])")
    if knob.choices is not None:
        raise SpecError(source, field, f"is categorical: give choices: [...] from {', '.join(knob.choices())}")
    for key in ("low", "high"):
        if key not in raw:
            raise SpecError(source, f"{field}.{key}", f"is missing; a range needs low and high ({knob.allowed()})")
    low = _value(raw["low"], knob, source, f"{field}.low")
    high = _value(raw["high"], knob, source, f"{field}.high")
    if low > high:
        raise SpecError(source, field, f"low ({low:g}) must be <= high ({high:g})")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise SpecError(source, f"{field}.log", f"must be true or false, got {shown(log)}")
    if log and low <= 0:
        raise SpecError(source, f"{field}.low", f"must be > 0 for a log-scale range, got {low:g}")
    step = raw.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0 \
                or (knob.kind is int and not float(step).is_integer()):
            raise SpecError(source, f"{field}.step", f"must be a positive {knob.kind.__name__}, got {shown(step)}")
        if log:
            raise SpecError(source, f"{field}.step", "cannot be combined with log: true")
        if high > low and step > high - low:
            raise SpecError(source, f"{field}.step", f"must be at most high - low ({shown(high - low)}) so the range "
                                                     f"holds two values, got {shown(step)}")
    if knob.kind is int:
        return IntRange(int(low), int(high), log, int(step or 1))
    return FloatRange(float(low), float(high), log, None if step is None else float(step))


def _value(raw: Any, knob: Knob, source: str, field: str) -> Any:
    if not knob.check(raw):
        raise SpecError(source, field, f"must be {knob.allowed()}, got {shown(raw)}")
    return int(raw) if knob.kind is int else float(raw) if knob.kind is float else raw


def check_enqueued(values: Any, space: SearchSpace, source: str, field: str) -> dict[str, Any]:
    """Validate an enqueued trial (e.g. a write-up's recipe): known names, inside the space."""
    if not isinstance(values, dict):
        raise SpecError(source, field, f"must be a mapping of hyperparameter values, got {shown(values)}")
    checked = {}
    for name, raw in values.items():
        if name not in KNOBS:
            raise SpecError(source, f"{field}.{name}", f"unknown hyperparameter; allowed: {', '.join(KNOBS)}")
        value = _value(raw, KNOBS[name], source, f"{field}.{name}")
        param = space.params[name]
        inside = (value == param.value if isinstance(param, Fixed)
                  else value in param.choices if isinstance(param, Choice)
                  else param.low <= value <= param.high and on_grid(value, param))
        if not inside:
            allowed = (f"the fixed value {param.value!r}" if isinstance(param, Fixed)
                       else f"one of {list(param.choices)}" if isinstance(param, Choice)
                       else f"within [{param.low:g}, {param.high:g}]" + (f" on its grid of step {param.step:g} "
                                                                        f"from {param.low:g}" if param.step else ""))
            raise SpecError(source, f"{field}.{name}", f"must be {allowed} (the search space), got {shown(raw)}")
        checked[name] = value
    for name in checked:  # a value for a knob that this recipe's own choices switch off is never used
        condition = KNOBS[name].only_when
        if condition is None:
            continue
        decided = checked.get(condition.other, space.params[condition.other])
        decided = decided.value if isinstance(decided, Fixed) else decided
        if not isinstance(decided, (FloatRange, IntRange, Choice)) and not condition.test(decided):
            raise SpecError(source, f"{field}.{name}", f"is never used: it applies only when {condition.text}, "
                            f"and this recipe's {condition.other} is {decided!r}; leave it out")
    return checked

