"""Study files: read and validated once into frozen dataclasses.

Nothing past this module reads raw YAML. Every problem becomes a
:class:`hpo.core.errors.SpecError` naming the file, the field path and what is
allowed, which the CLI prints as one line with exit code 2. The format is
documented in docs/study-files.md.
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import inspect
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from hpo.data import DATASETS, TORCHVISION as TORCHVISION_DATA
from hpo.data.errors import DataError
from hpo.data.splits import NORMALIZATIONS
from hpo.core.errors import SpecError, UserError, shown
from hpo.core.registry import Registry
from hpo.spec.model_space import (NAME_PARAM, PREFIX, ModelSpace, check_enqueued_model, is_searched, parse_candidates,
                                  parse_searched, values_to_check)
from hpo.spec.space import SearchSpace, check_enqueued, parse_lr_scaling, parse_search
from hpo.study.pruners import PRUNERS
from hpo.study.pruners import RESERVED as PRUNER_RESERVED
from hpo.study.samplers import RESERVED as SAMPLER_RESERVED
from hpo.study.objectives import COSTS
from hpo.study.samplers import SAMPLERS, SINGLE_OBJECTIVE_SAMPLERS
from hpo.models import DATA_ARGUMENTS, MODELS, source_of

NORMALIZE_CHOICES = ("auto", "measured", *NORMALIZATIONS)
# metric -> its natural direction. val_top5 needs more than 5 classes; F1 and balanced accuracy are
# scikit-learn's macro averages (hpo/train/trainer.py: class_balanced_scores).
METRICS = {"val_accuracy": "maximize", "val_loss": "minimize", "val_top5": "maximize", "val_f1_macro": "maximize",
           "val_balanced_accuracy": "maximize"}
DIRECTIONS = ("maximize", "minimize")
MAX_TRIALS = 100_000  # far above any study we know of (write-ups: tens to hundreds); a typo, not a plan
MAX_SEEDS = 100  # retrains per trial in a seed comparison
MAX_EPOCHS = 10_000  # write-up 000's longest budget is 600
MAX_SEED = 2**32 - 1  # NumPy and Optuna samplers take seeds below 2**32
# \Z, not $: "$" also matches before a final newline, and "digits\n" is not a name
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)\Z")  # what hpo trains on; checked against torch at run
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")  # torch.compile modes; reduce-overhead adds
# CUDA graphs


@dataclass(frozen=True)
class DataSpec:
    name: str
    val_fraction: float = 0.2  # of the train part, held out to score trials
    test_fraction: float = 0.2  # of the whole set, when it has no test part of its own
    split_seed: int = 0  # fixes the splits independently of the study seed
    normalize: str = "auto"  # auto, measured, imagenet or half (data/splits.py)
    args: Mapping[str, Any] = field(default_factory=dict)  # the data set loader's own arguments


@dataclass(frozen=True)
class ModelSpec:
    """One model (a name and its arguments); with ``space``, a searched model (hpo/spec/model_space.py) whose
    name shows the candidates and whose ``args`` are the fixed ones: each trial gets its own by ``chosen``."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    space: ModelSpace | None = None

    def chosen(self, trial) -> "ModelSpec":
        """The model this trial trains: sampled when the model is searched."""
        return self if self.space is None else ModelSpec(*self.space.suggest(trial))

    def of_params(self, params: Mapping[str, Any]) -> "ModelSpec":
        """The model a finished trial trained, from its params; refused (UserError) when the study file no
        longer offers it (edited between the search and the retrain)."""
        trained = params.get(NAME_PARAM)
        offered = self.space.candidates if self.space is not None else (self.name,)
        if trained is None and len(offered) > 1 and params:
            raise UserError(f"the trial chose no model (the study file searched none then); model.name now offers "
                            f"{', '.join(offered)}: name one, or run a new study")
        if trained is not None and trained not in offered:
            raise UserError(f"the trial trained model {trained!r}, which the study's model.name no longer offers "
                            f"({', '.join(offered)}); put it back, or run a new study")
        return self if self.space is None else ModelSpec(*self.space.resolve(params))

    def candidates(self) -> list["ModelSpec"]:
        """Each model a trial may train, with its fixed arguments and its searched ones at their first value."""
        if self.space is None:
            return [self]
        s = self.space
        return [ModelSpec(n, {**{k: v for k, v in s.fixed.items() if k in s.takes[n]},
                              **{k: values_to_check(p)[0] for k, p in s.searched.items() if k in s.takes[n]}})
                for n in s.candidates]

    def variants(self) -> list["ModelSpec"]:
        """Each model a trial may train at each combination of its searched arguments' ends (a range's ends,
        every choice): among them are the largest and the smallest network a trial can build."""
        if self.space is None:
            return [self]
        s, found = self.space, []
        for name in s.candidates:
            keys = [k for k in s.searched if k in s.takes[name]]
            fixed = {k: v for k, v in s.fixed.items() if k in s.takes[name]}
            for values in itertools.product(*(values_to_check(s.searched[k]) for k in keys)):
                found.append(ModelSpec(name, {**fixed, **dict(zip(keys, values))}))
        return found

    def build(self, splits):
        """This model, freshly initialised, for the classes, channels and image size of ``splits``."""
        from hpo.models import create_model

        if self.space is not None:
            raise RuntimeError("a searched model is built per trial: ModelSpec.chosen(trial) first")
        return create_model(self.name, num_classes=splits.num_classes, in_channels=splits.channels,
                            image_size=splits.image_size, **self.args)


@dataclass(frozen=True)
class RetrainSpec:
    epochs: tuple[int, ...]  # one retrain run per budget (write-up 000: 50, 100, 600)
    checkpoint_every: int = 0  # save the training state every N epochs (0 = never)
    keep_best: bool = False  # end with the weights of the best validation epoch
    early_stopping: int = 0  # stop after N epochs without a better validation score (0 = never)
    seeds: int = 1  # > 1: the best trial and the baseline (trial 0) each retrained with this many seeds (hpo/retrain/seeds.py)

    @property
    def monitors_validation(self) -> bool:
        """keep_best and early stopping need a validation split, so the retrain then trains on train only."""
        return self.keep_best or self.early_stopping > 0


@dataclass(frozen=True)
class BudgetSpec:
    trials: int  # finished trials in total (a rerun resumes towards this number)
    epochs: int  # per trial, the pruner's max resource
    retrain: RetrainSpec
    timeout_s: float | None = None
    retries: int = 2  # times a trial whose process died is retried from its last epoch (hpo/study/retries.py)


@dataclass(frozen=True)
class ComponentSpec:
    """A registry name and the user's arguments for it (sampler, pruner)."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySpec:
    name: str
    seed: int
    metric: str
    direction: str
    device: str
    compile: str  # torch.compile mode of the training forward pass, or off
    data: DataSpec
    model: ModelSpec
    budget: BudgetSpec
    search: SearchSpace
    sampler: ComponentSpec
    pruner: ComponentSpec
    enqueue: tuple[Mapping[str, Any], ...]
    source: str  # the file it came from, for messages
    raw: Mapping[str, Any]  # the validated document (after --set), logged with the study
    file: str | None = None  # the study file's absolute path; None for a spec read back from a stored study
    warm_start: WarmStartSpec | None = None  # hpo/study/warm_start.py
    costs: tuple[str, ...] = ()  # objectives after the metric, all minimized (hpo/study/objectives.py)

    @property
    def objectives(self) -> tuple[str, ...]:
        return (self.metric, *self.costs)

    @property
    def directions(self) -> tuple[str, ...]:
        return (self.direction, *("minimize" for _ in self.costs))

    @property
    def multi_objective(self) -> bool:
        return bool(self.costs)

    def build_sampler(self):
        return SAMPLERS.get(self.sampler.name)(space=self.search, seed=self.seed, **self.sampler.args)

    def build_pruner(self):
        return PRUNERS.get(self.pruner.name)(epochs=self.budget.epochs, **self.pruner.args)

    def check_recipe(self, params: Mapping[str, Any], field: str) -> dict:
        """``params`` as an enqueued recipe of this study, refused (SpecError) outside its space."""
        return check_recipe(params, self.search, self.model, self.source, field)

    def trial_seed(self, trial_number: int) -> int:
        """Each trial's training seed (init, batch order, augmentation): the same study seed gives every
        trial, and the retrain of a trial, the same run."""
        return self.seed + trial_number


TOP_LEVEL = ("name", "seed", "metric", "objectives", "direction", "device", "compile", "data", "model", "budget", "search",
             "lr_scaling", "sampler", "pruner", "enqueue", "warm_start")


def load_study(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> StudySpec:
    """Read, override (``--set a.b=value``) and validate a study file."""
    source = str(path)
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{source}: is a folder, not a study file" if path.is_dir() else f"{source}: no such study file")
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:  # no permission, a file that vanished, a device
        raise UserError(f"{source}: cannot be read ({err.strerror or err})") from None
    except RecursionError:
        raise UserError(f"{source}: nested too deep to read; a study file is at most {MAX_DEPTH} levels deep") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise UserError(f"{source}: {where}invalid YAML: {getattr(err, 'problem', None) or err}") from None
    except UnicodeDecodeError:
        raise UserError(f"{source}: not a text file") from None
    if not isinstance(raw, dict):
        raise SpecError(source, "", f"must be a YAML mapping with the fields {', '.join(TOP_LEVEL)}")
    _plain_document(raw, source)  # before anything walks it
    raw = anchor_paths(raw, path.resolve().parent)  # the file's own relative paths: from its folder
    raw = anchor_paths(apply_overrides(raw, overrides), Path.cwd())  # a --set path: from where it was typed
    raw = _user_code_from(raw, path.resolve().parent)
    if overrides:
        source = f"{source} (with --set {' '.join(overrides)})"
    return dataclasses.replace(parse_study(raw, source), file=str(path.resolve()))


# The study file's paths, read by other processes: relative ones are taken from the file's folder.
PATH_FIELDS = (("data", "root"), ("data", "import_from"), ("model", "pretrained"), ("model", "import_from"))


def anchor_paths(raw: dict, folder: Path) -> dict:
    """``raw`` with its relative paths (``data.root``, ``model.pretrained``) made absolute from ``folder``.

    A study file's paths are relative to the file's folder, so a study runs the same from any directory; the
    stored study, its MLflow runs and its checkpoints record the absolute path. ``~`` is expanded."""
    raw = dict(raw)
    for section, key in PATH_FIELDS:
        part = raw.get(section)
        value = part.get(key) if isinstance(part, dict) else None
        if isinstance(value, str) and value and "\0" not in value:
            path = Path(value).expanduser()
            raw[section] = {**part, key: str(path if path.is_absolute() else (folder / path).resolve())}
    return raw


def _user_code_from(raw: dict, folder: Path) -> dict:
    """A model or a data set of the user's own (``module:callable``) is imported from the study file's folder
    first, unless its ``import_from`` says otherwise; recorded absolute, so that workers, retrains and a stored
    study find the same module."""
    for section in ("data", "model"):
        part = raw.get(section)
        part = {"name": part} if isinstance(part, (str, list)) else part
        names = part.get("name") if isinstance(part, dict) else None
        names = names.get("choices") if isinstance(names, dict) else names  # a searched model's candidates
        names = names if isinstance(names, list) else [names]
        if isinstance(part, dict) and "import_from" not in part \
                and any(isinstance(n, str) and source_of(n) == "user" for n in names):
            raw = {**raw, section: {**part, "import_from": str(folder)}}
    return raw


def check_data_root(spec: StudySpec) -> None:
    """Refuse, in one line, a ``data.root`` that does not exist (unless the study may download it there)."""
    root = spec.data.args.get("root")
    if isinstance(root, str) and not spec.data.args.get("download") and not Path(root).exists():
        raise SpecError(spec.source, "data.root", f"{root} does not exist (a relative data.root is read from the "
                        "study file's folder, one given with --set from the current directory); point it at the "
                        "data set's folder, or --set data.root=DIR")


def apply_overrides(raw: dict, overrides) -> dict:
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(f"--set {item}: expected FIELD.PATH=VALUE, e.g. --set budget.trials=5")
        try:
            value = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            raise UserError(f"--set {item}: the value is not valid YAML") from None
        node = raw
        *parents, leaf = key.split(".")
        for i, part in enumerate(parents):
            child = node.get(part)
            if child is None or isinstance(child, str) and part in ("sampler", "pruner", "data", "model"):
                child = {"name": child} if isinstance(child, str) else {}
                node[part] = child
            if not isinstance(child, dict):
                raise UserError(f"--set {item}: {'.'.join(parents[:i + 1])} is not a mapping")
            node = child
        node[leaf] = value
    return raw


# False while a stored spec is read back for show (hpo report): the user's modules it names are not imported,
# and their arguments are taken as they were judged when the study file was read.
_IMPORTS_USER_CODE: contextvars.ContextVar[bool] = contextvars.ContextVar("imports_user_code", default=True)


def parse_study(raw: dict, source: str, import_user_code: bool = True) -> StudySpec:
    """Validate a study document. ``import_user_code=False`` reads a stored one without importing the modules
    it names (a store is no place to name code to run)."""
    token = _IMPORTS_USER_CODE.set(import_user_code)
    try:
        return _parse_study(raw, source)
    finally:
        _IMPORTS_USER_CODE.reset(token)


def _parse_study(raw: dict, source: str) -> StudySpec:
    _plain_document(raw, source)
    _no_unknown(raw, TOP_LEVEL, source, "")
    name = _required(raw, "name", source, "")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SpecError(source, "name", f"must be 1-100 letters, digits, '_', '.' or '-', got {shown(name)}")
    seed = _int(raw.get("seed", 0), source, "seed", low=0, high=MAX_SEED)
    metric = raw.get("metric", "val_accuracy")
    if not isinstance(metric, str) or metric not in METRICS:
        raise SpecError(source, "metric", f"must be one of {', '.join(METRICS)}, got {shown(metric)}")
    costs = ()
    if "objectives" in raw:
        first, costs = _parse_objectives(raw["objectives"], source)
        if "metric" in raw and metric != first:
            raise SpecError(source, "metric", f"is {metric}, objectives[0] is {first}; the first objective is the "
                                              f"metric: give one of the two")
        metric = first
    direction = raw.get("direction", METRICS[metric])
    if direction not in DIRECTIONS:
        raise SpecError(source, "direction", f"must be one of {', '.join(DIRECTIONS)}, got {shown(direction)}")
    device = raw.get("device", "auto")
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise SpecError(source, "device", f"must be auto, cpu, cuda or cuda:N, got {shown(device)}")
    budget = _parse_budget(raw.get("budget"), source)
    model = _parse_model(raw.get("model"), source)
    search = parse_search(raw.get("search"), source, model_searched=model.space is not None,
                          lr_scaling=parse_lr_scaling(raw.get("lr_scaling", "none"), source))
    spec = StudySpec(
        name=name, seed=seed, metric=metric, direction=direction, device=device,
        compile=_choice(_compile_mode(raw.get("compile", "off")), COMPILE_MODES, source, "compile"),
        data=_parse_data(raw.get("data"), source),
        model=model,
        budget=budget, search=search,
        sampler=_parse_component(raw.get("sampler"), SAMPLERS, SAMPLER_RESERVED, source, "sampler", default="tpe"),
        pruner=_parse_component(raw.get("pruner"), PRUNERS, PRUNER_RESERVED, source, "pruner",
                                default="none" if costs else "median"),
        enqueue=_parse_enqueue(raw.get("enqueue"), search, model, source),
        source=source, raw=raw, warm_start=_parse_warm_start(raw.get("warm_start"), source), costs=costs)
    if costs and spec.pruner.name != "none":
        raise SpecError(source, "pruner", f"is {spec.pruner.name}, but Optuna does not prune a study with several "
                                          f"objectives ({', '.join(spec.objectives)}): leave pruner out or set it "
                                          f"to none")
    if costs and spec.sampler.name in SINGLE_OBJECTIVE_SAMPLERS:
        raise SpecError(source, "sampler", f"{spec.sampler.name} optimizes one objective; with several "
                                           f"({', '.join(spec.objectives)}) use one of "
                                           f"{', '.join(n for n in SAMPLERS.names() if n not in SINGLE_OBJECTIVE_SAMPLERS)}")
    if spec.warm_start is not None and spec.warm_start.study == name and spec.warm_start.storage is None:
        raise SpecError(source, "warm_start.study", f"is this study ({name!r}); a warm start begins from another "
                                                    f"one (or give warm_start.storage where it lies)")
    if spec.model.space is not None and spec.sampler.name == "grid":
        raise SpecError(source, "sampler", "the grid sampler walks search: only; a searched model (model.name "
                                           "choices, model argument ranges) needs another sampler, e.g. tpe")
    for part, build in (("sampler", spec.build_sampler), ("pruner", spec.build_pruner)):
        try:  # the constructors check their arguments' values; building is cheap and touches no storage
            build()
        except (ValueError, TypeError) as err:
            raise SpecError(source, part, str(err).splitlines()[0]) from None
    return spec


def user_code_named(spec: StudySpec) -> list[str]:
    """The user's modules (``module:callable``) a study trains with: its model candidates and its data set."""
    models = spec.model.space.candidates if spec.model.space else (spec.model.name,)
    return [n for n in (*models, spec.data.name) if source_of(n) == "user" and not n.startswith(TORCHVISION_DATA)]


def is_study_file(value: str) -> bool:
    """STUDY on the command line is a study file (``*.yaml``, or any existing file) or a stored study's name."""
    return value.endswith((".yaml", ".yml")) or Path(value).is_file()


def study_name(study_arg: str) -> str:
    """The study's name, read from the file when STUDY is a study file."""
    return load_study(study_arg).name if is_study_file(study_arg) else study_arg


def _compile_mode(value: Any) -> Any:
    """YAML reads a bare ``off`` as false (and ``on`` as true): take them as the words they were meant as."""
    return {False: "off", True: "default"}.get(value, value) if isinstance(value, bool) else value


def _parse_objectives(raw: Any, source: str) -> tuple[str, tuple[str, ...]]:
    """``objectives: [METRIC, COST...]``: the metric, then the costs (hpo/study/objectives.py)."""
    allowed = f"the metric first ({', '.join(METRICS)}), then any of {', '.join(COSTS)}"
    if not isinstance(raw, list) or not 1 <= len(raw) <= 1 + len(COSTS):
        raise SpecError(source, "objectives", f"must be a list of 1 to {1 + len(COSTS)} names: {allowed}; got "
                                              f"{shown(raw)}")
    first, *rest = raw
    if not isinstance(first, str) or first not in METRICS:
        raise SpecError(source, "objectives[0]", f"must be the metric, one of {', '.join(METRICS)}; got {shown(first)}")
    for index, cost in enumerate(rest, start=1):
        if not isinstance(cost, str) or cost not in COSTS:
            raise SpecError(source, f"objectives[{index}]", f"must be one of {', '.join(COSTS)}; got {shown(cost)}")
        if cost in rest[:index - 1]:
            raise SpecError(source, f"objectives[{index}]", f"names {cost} twice")
    return first, tuple(rest)


def _parse_data(raw: Any, source: str) -> DataSpec:
    if raw is None:
        raise SpecError(source, "data", f"is missing; give at least data.name, one of {', '.join(DATASETS.names())}")
    raw = _mapping({"name": raw} if isinstance(raw, str) else raw, source, "data")
    common = ("name", "val_fraction", "test_fraction", "split_seed", "normalize")
    own = {k: v for k, v in raw.items() if k not in common[1:]}
    name = own.get("name")
    if isinstance(name, str) and (name.startswith(TORCHVISION_DATA) or ":" in name):
        component = _parse_outside_data(name, {k: v for k, v in own.items() if k != "name"}, source)
    else:
        component = _parse_component(own, DATASETS, (), source, "data", default=None)
        try:  # the loader's own rules for its option values (stream, workers, ...); the data is not opened here
            DATASETS.check(component.name, component.args)
        except DataError as err:
            raise SpecError(source, err.field or "data", err.message) from None
    return DataSpec(
        name=component.name,
        val_fraction=_fraction(raw.get("val_fraction", 0.2), source, "data.val_fraction"),
        test_fraction=_fraction(raw.get("test_fraction", 0.2), source, "data.test_fraction"),
        split_seed=_int(raw.get("split_seed", 0), source, "data.split_seed", low=0),
        normalize=_choice(raw.get("normalize", "auto"), NORMALIZE_CHOICES, source, "data.normalize"),
        args=component.args)


def _parse_outside_data(name: str, args: dict, source: str) -> ComponentSpec:
    """A torchvision data set by name, or the user's ``module:callable`` (its arguments judged against its
    signature); the files are opened when the data is loaded."""
    if name.startswith(TORCHVISION_DATA):
        from hpo.data.torchvision_data import check

        try:
            check(name.removeprefix(TORCHVISION_DATA), args)
        except DataError as err:
            raise SpecError(source, err.field or "data", err.message) from None
        return ComponentSpec(name, args)
    import_from = args.get("import_from")
    if import_from is not None and (not isinstance(import_from, str) or not import_from):
        raise SpecError(source, "data.import_from", f"must be a folder, got {shown(import_from)}")
    _check_user_callable(name, {k: v for k, v in args.items() if k != "import_from"}, import_from, (), source,
                         "data")
    return ComponentSpec(name, args)


def _parse_model(raw: Any, source: str) -> ModelSpec:
    """A model from one of four sources (``hpo.models.source_of``) and its arguments, plus ``pretrained``: a
    local weights file (never downloaded), and for the user's own module ``import_from``: the folder it is
    looked for in first (the study file's, unless given). Several names, or an argument given as a range or
    choices, make a searched model (hpo/spec/model_space.py)."""
    raw = {"name": raw} if isinstance(raw, (str, list)) else raw
    if not isinstance(raw, dict) or "name" not in raw or isinstance(raw.get("name"), str) and not any(
            is_searched(v) for k, v in raw.items() if k not in ("name", "pretrained", "import_from")):
        return _parse_one_model(raw, source)
    candidates = parse_candidates(raw["name"], source)
    searched = {k: parse_searched(v, source, f"model.{k}") for k, v in raw.items()
                if k not in ("name", "pretrained", "import_from") and is_searched(v)}
    fixed = {k: v for k, v in raw.items() if k != "name" and k not in searched}
    takes = {}
    for name in candidates:  # what each takes, then each value it may get, judged as for a single model
        takes[name] = _arguments_taken(name, fixed, searched, source)
        base = {k: v for k, v in fixed.items() if k in takes[name]}
        first = {k: values_to_check(p)[0] for k, p in searched.items() if k in takes[name]}
        one = _parse_one_model({"name": name, **base, **first}, source)
        for key, param in searched.items():
            for value in values_to_check(param)[1:] if key in takes[name] else []:
                _parse_one_model({"name": name, **base, **first, key: value}, source)
        fixed = {**fixed, **{k: v for k, v in one.args.items() if k in ("pretrained", "import_from")}}
    for key in (*fixed, *searched):
        if not any(key in takes[n] for n in candidates):
            raise SpecError(source, f"model.{key}", f"is never used: none of {', '.join(candidates)} takes it")
    space = ModelSpace(candidates, fixed, searched, {n: tuple(sorted(t)) for n, t in takes.items()})
    return ModelSpec(" | ".join(candidates), fixed, space)


def _arguments_taken(name: str, fixed: Mapping[str, Any], searched: Mapping[str, Any], source: str) -> set[str]:
    """The arguments among ``fixed`` and ``searched`` that the model ``name`` takes."""
    from hpo.models import UnknownArgument, UnknownModel, check_model

    keys = [k for k in (*fixed, *searched) if k not in ("pretrained", "import_from")]
    common = {"pretrained"} | ({"import_from"} if source_of(name) == "user" else set())
    kind = source_of(name)
    if kind == "builtin":
        if name not in MODELS:
            _parse_one_model({"name": name}, source)  # refuses it, listing the names
        return common | (set(keys) & set(MODELS.arguments(name, DATA_ARGUMENTS)))
    if kind == "user":
        from hpo.core.user_code import load_callable, takes_any_keyword, user_arguments

        import_from = fixed.get("import_from")
        if not _IMPORTS_USER_CODE.get():
            return common | set(keys)
        try:
            constructor = load_callable(name, [import_from] if isinstance(import_from, str) else [])
        except ValueError as err:
            raise SpecError(source, "model.name", str(err)) from None
        if takes_any_keyword(constructor):
            return common | set(keys)
        return common | (set(keys) & {p.name for p in user_arguments(constructor, DATA_ARGUMENTS)})
    taken = set(common)
    for key in keys:  # torchvision's and timm's builders take **kwargs: ask the architecture itself
        value = fixed[key] if key in fixed else values_to_check(searched[key])[0]
        try:
            check_model(name, {key: value})
        except UnknownModel as err:
            raise SpecError(source, "model.name", str(err)) from None
        except UnknownArgument:
            continue
        except ValueError:  # it takes the argument, and the value is judged below
            pass
        taken.add(key)
    return taken


def _parse_one_model(raw: Any, source: str) -> ModelSpec:
    """One model and its arguments (no search)."""
    raw = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or source_of(raw["name"]) == "builtin":
        pretrained = raw.get("pretrained") if isinstance(raw, dict) else None
        rest = {k: v for k, v in raw.items() if k != "pretrained"} if isinstance(raw, dict) else raw
        component = _parse_component(rest, MODELS, DATA_ARGUMENTS, source, "model", default=None)
        try:  # the model's own rules for its argument values; nothing is built here
            MODELS.check(component.name, component.args)
        except ValueError as err:
            raise SpecError(source, "model", str(err)) from None  # e.g. "model: depth must be >= 0, got -1"
        name, args = component.name, dict(component.args)
    else:
        name, pretrained = raw["name"], raw.get("pretrained")
        args = {k: v for k, v in raw.items() if k not in ("name", "pretrained")}
        _check_outside_model(name, args, source)
    if pretrained is not None:
        if not isinstance(pretrained, str) or not pretrained:
            raise SpecError(source, "model.pretrained", f"must be the path of a local weights file, got "
                                                        f"{shown(pretrained)}")
        # The file itself is checked when the model is built (hpo run), so a study file validates anywhere.
        args["pretrained"] = str(Path(pretrained).expanduser())
    return ModelSpec(name, args)


def _check_outside_model(name: str, args: dict, source: str) -> None:
    """A torchvision, timm or user model's arguments, judged against what builds it (the data's image size is
    judged when the data is loaded)."""
    from hpo.models import UnknownModel, check_model

    kind = source_of(name)
    import_from = args.get("import_from")
    if "import_from" in args and kind != "user":
        raise SpecError(source, "model.import_from", "is only for a model of the user's own (module:callable)")
    if import_from is not None and (not isinstance(import_from, str) or not import_from):
        raise SpecError(source, "model.import_from", f"must be a folder, got {shown(import_from)}")
    if kind == "user":
        _check_user_callable(name, {k: v for k, v in args.items() if k != "import_from"}, import_from,
                             DATA_ARGUMENTS, source, "model")
        return
    try:
        check_model(name, args)
    except UnknownModel as err:
        raise SpecError(source, "model.name", str(err)) from None
    except ValueError as err:
        raise SpecError(source, "model", str(err)) from None


def _check_user_callable(name: str, args: Mapping[str, Any], import_from: str | None, filled, source: str,
                         section: str):
    """Import the user's ``module:callable`` (hpo/core/user_code.py) and judge ``args`` against its signature:
    unknown names, missing required ones, values of another type than the default's. Returns the callable."""
    from hpo.core.user_code import load_callable, takes_any_keyword, user_arguments

    if not _IMPORTS_USER_CODE.get():
        return None
    try:
        constructor = load_callable(name, [import_from] if import_from else [])
    except ValueError as err:
        raise SpecError(source, f"{section}.name", str(err)) from None
    params = {p.name: p for p in user_arguments(constructor, filled)}
    for key, value in args.items():
        if key not in params and not takes_any_keyword(constructor):
            takes = f"takes {', '.join(params)}" if params else "takes no arguments"
            raise SpecError(source, f"{section}.{key}", f"unknown argument; {name} {takes}")
        if key in params:
            _check_type(value, params[key].default, source, f"{section}.{key}")
    for param in params.values():
        if param.default is inspect.Parameter.empty and param.name not in args:
            raise SpecError(source, f"{section}.{param.name}", f"is required by {name}")
    return constructor


def _parse_budget(raw: Any, source: str) -> BudgetSpec:
    raw = _mapping(raw if raw is not None else {}, source, "budget")
    _no_unknown(raw, ("trials", "epochs", "timeout_s", "retries", "retrain"), source, "budget")
    epochs = _int(raw.get("epochs", 10), source, "budget.epochs", low=1, high=MAX_EPOCHS)
    retrain = _mapping(raw.get("retrain") or {}, source, "budget.retrain")
    _no_unknown(retrain, ("epochs", "checkpoint_every", "keep_best", "early_stopping", "seeds"), source,
                "budget.retrain")
    retrain_epochs = retrain.get("epochs", epochs)
    retrain_epochs = retrain_epochs if isinstance(retrain_epochs, list) and retrain_epochs else [retrain_epochs]
    keep_best = retrain.get("keep_best", False)
    if not isinstance(keep_best, bool):
        raise SpecError(source, "budget.retrain.keep_best", f"must be true or false, got {shown(keep_best)}")
    timeout_s = raw.get("timeout_s")
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or timeout_s <= 0):
        raise SpecError(source, "budget.timeout_s", f"must be a number of seconds > 0 or null, got {shown(timeout_s)}")
    return BudgetSpec(
        trials=_int(raw.get("trials", 20), source, "budget.trials", low=1, high=MAX_TRIALS),
        epochs=epochs,
        retrain=RetrainSpec(
            epochs=tuple(_int(e, source, "budget.retrain.epochs", low=1, high=MAX_EPOCHS) for e in retrain_epochs),
            checkpoint_every=_int(retrain.get("checkpoint_every", 0), source, "budget.retrain.checkpoint_every", low=0),
            keep_best=keep_best,
            early_stopping=_int(retrain.get("early_stopping", 0), source, "budget.retrain.early_stopping", low=0),
            seeds=_int(retrain.get("seeds", 1), source, "budget.retrain.seeds", low=1, high=MAX_SEEDS)),
        timeout_s=None if timeout_s is None else float(timeout_s),
        retries=_int(raw.get("retries", 2), source, "budget.retries", low=0, high=100))


def _parse_component(raw: Any, registry: Registry, reserved, source: str, field: str, default) -> ComponentSpec:
    """``name`` or ``{name: ..., arg: value, ...}``; arguments are checked against the constructor's signature."""
    if raw is None:
        raw = default
    if raw is None:
        raise SpecError(source, f"{field}.name", f"is missing; allowed: {', '.join(registry.names())}")
    if isinstance(raw, str):
        raw = {"name": raw}
    raw = _mapping(raw, source, field)
    name = raw.get("name")
    if not isinstance(name, str) or name not in registry:
        what = "is missing" if name is None else f"unknown {registry.kind} {shown(name)}"
        more = {"model": ", or torchvision/NAME, timm/NAME, module:callable (docs/models-and-data.md)",
                "dataset": ", or torchvision/NAME, module:callable (docs/models-and-data.md)"}.get(registry.kind, "")
        raise SpecError(source, f"{field}.name", f"{what}; allowed: {', '.join(registry.names())}{more}")
    args = {k: v for k, v in raw.items() if k != "name"}
    allowed = registry.arguments(name, reserved)
    for key in args:
        if key not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no arguments"
            raise SpecError(source, f"{field}.{key}", f"unknown argument; {registry.kind} {shown(name)} {takes}")
    for param in inspect.signature(registry.get(name)).parameters.values():
        if param.name not in allowed:
            continue
        if param.default is inspect.Parameter.empty and param.name not in args:
            raise SpecError(source, f"{field}.{param.name}", f"is required by {registry.kind} {shown(name)}")
        if param.name in args:
            _check_type(args[param.name], param.default, source, f"{field}.{param.name}")
    return ComponentSpec(name, args)


def _check_type(value: Any, default: Any, source: str, field: str) -> None:
    """Arguments must have their default's type (an int where a float is expected is fine). A default of
    None or "auto" stands for several types (``channels: auto | 1 | 3``): the registered check (or the
    constructor) judges those values."""
    if default is None or default is inspect.Parameter.empty or default == "auto":
        return
    expected = type(default)
    ok = (isinstance(value, bool) if expected is bool
          else isinstance(value, (int, float)) and not isinstance(value, bool) if expected is float
          else isinstance(value, expected) and not isinstance(value, bool) if expected is int
          else isinstance(value, expected))
    if not ok:
        names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                 list: "a list", tuple: "a list", dict: "a mapping"}
        raise SpecError(source, field, f"must be {names.get(expected, expected.__name__)}, got {shown(value)}")


def _parse_enqueue(raw: Any, space: SearchSpace, model: ModelSpec, source: str) -> tuple[dict, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError(source, "enqueue", f"must be a list of hyperparameter mappings, got {shown(raw)}")
    return tuple(check_recipe(item, space, model, source, f"enqueue[{i}]") for i, item in enumerate(raw))


@dataclass(frozen=True)
class WarmStartSpec:
    """``warm_start:``: begin with the best trials of another study whose params lie in this study's space."""

    study: str  # its name
    storage: str | None = None  # its storage URL; None: the storage this study runs in
    top: int = 3  # how many of its best trials to enqueue


def _parse_warm_start(raw: Any, source: str) -> WarmStartSpec | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"study": raw}
    if not isinstance(raw, dict):
        raise SpecError(source, "warm_start", f"must be a mapping (study: NAME, storage: URL, top: K), "
                                              f"got {shown(raw)}")
    _no_unknown(raw, ("study", "storage", "top"), source, "warm_start")
    name = _required(raw, "study", source, "warm_start")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SpecError(source, "warm_start.study", f"must be a study name (1-100 letters, digits, '_', '.' or "
                                                    f"'-'), got {shown(name)}")
    storage = raw.get("storage")
    if storage is not None and (not isinstance(storage, str) or not storage.strip()):
        raise SpecError(source, "warm_start.storage", f"must be a storage URL (sqlite:///hpo.db, "
                                                      f"postgresql://...), got {shown(storage)}")
    return WarmStartSpec(name, storage, _int(raw.get("top", 3), source, "warm_start.top", low=1, high=1000))


def check_recipe(item: Any, space: SearchSpace, model: ModelSpec, source: str, field: str) -> dict:
    """One set of trial params (an enqueued recipe, or a trial of another study to warm-start from), refused
    (SpecError) unless every value lies in this study's space."""
    chosen = {k: v for k, v in item.items() if k == NAME_PARAM or k.startswith(PREFIX)} \
        if isinstance(item, dict) else {}
    recipe = check_enqueued({k: v for k, v in item.items() if k not in chosen} if chosen else item, space,
                            source, field)
    if chosen:
        if model.space is None:
            raise SpecError(source, f"{field}.{next(iter(chosen))}", "the model is not searched (model.name "
                            "is one name and no model argument is a range or choices): leave it out")
        recipe.update(check_enqueued_model(chosen, model.space, source, field))
    return recipe


MAX_DEPTH = 20  # levels of nesting: a study file needs 4 (search.lr.choices[0]); a typo or an attack needs more
PLAIN = (dict, list, str, int, float, bool, type(None))  # what a study file is made of; YAML can say more


def _plain_document(raw: dict, source: str) -> None:
    """Refuse, wherever it stands in the document, what no field takes: a key that is not a name, a number
    that is not finite, a value YAML builds that is no number, string, list or mapping (a date, bytes, a
    set), and nesting past MAX_DEPTH. Walked without recursion, so no document can exhaust the stack, and each
    list or mapping once, however many YAML aliases share it (an alias bomb of billions of items is a few)."""
    stack: list[tuple[Any, str, int]] = [(raw, "", 0)]
    seen: set[int] = set()
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if id(value) in seen:
                continue
            seen.add(id(value))
        if depth > MAX_DEPTH:
            raise SpecError(source, where, f"is nested more than {MAX_DEPTH} levels deep")
        if not isinstance(value, PLAIN):
            raise SpecError(source, where, f"must be a number, a string, a list or a mapping, got a "
                                           f"{type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(source, where, f"must be a finite number, got {value}")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise SpecError(source, where, f"keys must be names, got {shown(key)}")
                stack.append((item, f"{where}.{key}".lstrip("."), depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))


def _mapping(raw: Any, source: str, field: str) -> dict:
    if not isinstance(raw, dict):
        raise SpecError(source, field, f"must be a mapping, got {shown(raw)}")
    return raw


def _required(raw: dict, key: str, source: str, parent: str) -> Any:
    if raw.get(key) is None:
        raise SpecError(source, f"{parent}.{key}".lstrip("."), "is required")
    return raw[key]


def _no_unknown(raw: dict, allowed, source: str, parent: str) -> None:
    for key in raw:
        if key not in allowed:
            field = f"{parent}.{key}".lstrip(".")
            raise SpecError(source, field, f"unknown field; allowed: {', '.join(allowed)}")


def _int(value: Any, source: str, field: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or high is not None and value > high:
        allowed = f">= {low}" if high is None else f"from {low} to {high:,}"
        raise SpecError(source, field, f"must be an integer {allowed}, got {shown(value)}")
    return value


def _choice(value: Any, allowed, source: str, field: str) -> Any:
    if value not in allowed:
        raise SpecError(source, field, f"must be one of {', '.join(map(str, allowed))}, got {shown(value)}")
    return value


def _fraction(value: Any, source: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise SpecError(source, field, f"must be a number between 0 and 1 (exclusive), got {shown(value)}")
    return float(value)
