"""Bad input is refused by construction, whatever it is: study files, ``--set`` strings and checkpoints mutated
by type, value, nesting and encoding (Hypothesis) are either good or refused in one line with exit code 2 — no
traceback, no crash file, and a study-file refusal in under a second. They run in process (``hpo.cli.main``),
so each example costs milliseconds: a few dozen in the fast lane, hundreds in the slow one.
"""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpo.cli import main
from hpo.core.errors import UserError

from helpers import TINY_STUDY

FAST, SLOW = 40, 200  # examples per property in each lane
FAST_SETTINGS = settings(max_examples=FAST, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW_SETTINGS = settings(max_examples=SLOW, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# What YAML can say: every scalar type it builds (dates and bytes among them), and lists and mappings of them,
# mappings keyed by numbers as well as names.
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.dates(),
                    st.binary(max_size=8))
JUNK = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=3),
                    max_leaves=8)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


PATHS = list(_paths(TINY_STUDY))[1:]  # every field of a good study, leaf or not
FIELD_NAMES = sorted({str(part) for path in PATHS for part in path if isinstance(part, str)})


def _mutated(path: tuple, value, beside: str | None) -> dict:
    """The tiny study with the field at ``path`` replaced by ``value`` (or, with ``beside``, a new key of that
    name added next to it)."""
    study = copy.deepcopy(TINY_STUDY)
    node = study
    for part in path[:-1]:
        node = node[part]
    if beside is not None and isinstance(node, dict):
        node[beside] = value
    else:
        node[path[-1]] = value
    return study


def _check(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as done:  # argparse's refusals
        code = done.code
    out, err = capsys.readouterr()
    return code, out, err


def _assert_good_or_one_line(code: int, out: str, err: str, source: str) -> None:
    assert code in (0, 2), f"exit {code}: {err}"  # 1 would be a crash (hpo/api.py: crashed) or failed work
    assert "Traceback" not in err
    if code == 0:
        assert out.startswith(f"{source}: OK"), out
    else:
        assert out == "" and len(err.strip().splitlines()) == 1, err
        assert err.startswith("hpo check: error: "), err
        # How fast a refusal is, is not timed here (a loaded machine fails any bound): tests/test_startup.py
        # checks that a refusal imports none of torch, Optuna and MLflow.


@pytest.fixture(scope="module", autouse=True)
def warm():
    """The first good file imports Optuna (its sampler and pruner are built to check their arguments): once,
    before any example is timed."""
    from hpo.spec.study_file import parse_study

    parse_study(copy.deepcopy(TINY_STUDY), "warm-up")


def _study_file_property(tmp_path, capsys, path, value, beside):
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump(_mutated(path, value, beside), sort_keys=False, allow_unicode=True))
    _assert_good_or_one_line(*_check(["check", str(file)], capsys), source=str(file))


MUTATIONS = (st.sampled_from(PATHS), JUNK, st.one_of(st.none(), st.sampled_from(FIELD_NAMES), st.text(max_size=6)))


@FAST_SETTINGS
@given(*MUTATIONS)
def test_a_mutated_study_file_is_good_or_one_line(tmp_path, capsys, path, value, beside):
    _study_file_property(tmp_path, capsys, path, value, beside)


@pytest.mark.slow  # many examples
@SLOW_SETTINGS
@given(*MUTATIONS)
def test_many_mutated_study_files_are_good_or_one_line(tmp_path, capsys, path, value, beside):
    _study_file_property(tmp_path, capsys, path, value, beside)


SET_FIELDS = st.one_of(st.sampled_from([".".join(map(str, p)) for p in PATHS if all(isinstance(x, str) for x in p)]),
                       st.lists(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=5)), min_size=1, max_size=4)
                       .map(".".join), st.text(max_size=10))
SET_VALUES = st.one_of(st.text(max_size=20), JUNK.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()))


def _set_property(tmp_path, capsys, field, value):
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump(TINY_STUDY, sort_keys=False))
    source = f"{file} (with --set {field}={value})"
    code, out, err = _check(["check", str(file), "--set", f"{field}={value}"], capsys)
    assert code in (0, 2), f"exit {code}: {err}"
    assert "Traceback" not in err
    if code == 2:
        assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("hpo check: error: "), err
    else:
        assert out.startswith(source.split(" (with")[0]), out


@FAST_SETTINGS
@given(SET_FIELDS, SET_VALUES)
def test_a_set_string_is_good_or_one_line(tmp_path, capsys, field, value):
    _set_property(tmp_path, capsys, field, value)


@pytest.mark.slow  # many examples
@SLOW_SETTINGS
@given(SET_FIELDS, SET_VALUES)
def test_many_set_strings_are_good_or_one_line(tmp_path, capsys, field, value):
    _set_property(tmp_path, capsys, field, value)


def _good_checkpoint() -> dict:
    from hpo.models import create_model

    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8), width=4)
    return {"format": "hpo-checkpoint/1", "state_dict": model.state_dict(),
            "model": {"name": "digits_cnn", "args": {"width": 4}},
            "preprocessing": {"channels": 1, "image_size": [8, 8], "mean": [0.3], "std": [0.4]},
            "class_names": [str(i) for i in range(10)],
            "data": {"name": "digits", "args": {}, "val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0},
            "metrics": {"test_accuracy": 0.9}, "hyperparams": {}, "study": {}, "versions": {}}


CHECKPOINT_FIELDS = ["format", "state_dict", "model", "preprocessing", "class_names", "data", "metrics"]
# What torch.load(weights_only=True) can hand back: numbers, strings, lists, dicts, tensors.
TENSOR_SAFE = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(),
                                     st.text(max_size=8), st.just(torch.zeros(2)), st.just(torch.full((3,), float("nan")))),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=6)


def _checkpoint_property(tmp_path, field, subfield, value):
    from hpo.train.checkpoint import load_checkpoint

    checkpoint = _good_checkpoint()
    if subfield is not None and isinstance(checkpoint[field], dict) and checkpoint[field]:
        key = sorted(checkpoint[field])[subfield % len(checkpoint[field])]
        checkpoint[field][key] = value
    else:
        checkpoint[field] = value
    path = tmp_path / "mutated.pt"
    torch.save(checkpoint, path)
    try:
        load_checkpoint(path)
    except UserError as err:
        assert len(str(err).splitlines()) == 1 and str(path) in str(err)


@FAST_SETTINGS
@given(st.sampled_from(CHECKPOINT_FIELDS), st.one_of(st.none(), st.integers(0, 20)), TENSOR_SAFE)
def test_a_mutated_checkpoint_loads_or_is_one_line(tmp_path, field, subfield, value):
    _checkpoint_property(tmp_path, field, subfield, value)


@pytest.mark.slow  # many examples
@SLOW_SETTINGS
@given(st.sampled_from(CHECKPOINT_FIELDS), st.one_of(st.none(), st.integers(0, 20)), TENSOR_SAFE)
def test_many_mutated_checkpoints_load_or_are_one_line(tmp_path, field, subfield, value):
    _checkpoint_property(tmp_path, field, subfield, value)
