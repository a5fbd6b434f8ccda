"""Study-file parsing beyond the search space: defaults, overrides, registries."""

from __future__ import annotations

import pytest
import yaml

from hpo.core.errors import SpecError, UserError
from hpo.spec.study_file import apply_overrides, load_study, parse_study

from helpers import REPO, TINY_STUDY


def test_defaults():
    spec = parse_study({"name": "d", "data": "digits", "model": "mlp", "search": {"lr": [0.1, 0.01]}}, "x.yaml")
    assert (spec.seed, spec.metric, spec.direction, spec.device) == (0, "val_accuracy", "maximize", "auto")
    assert (spec.budget.trials, spec.budget.epochs, spec.budget.retrain.epochs) == (20, 10, (10,))
    assert (spec.sampler.name, spec.pruner.name) == ("tpe", "median")
    assert spec.data.name == "digits" and spec.data.val_fraction == 0.2
    minimize = parse_study({"name": "d", "data": "digits", "model": "mlp", "metric": "val_loss",
                            "search": {"lr": [0.1, 0.01]}}, "x.yaml")
    assert minimize.direction == "minimize"


def test_overrides_set_nested_fields_with_yaml_values():
    raw = apply_overrides(TINY_STUDY, ["budget.trials=12", "sampler.n_startup_trials=2", "pruner=none",
                                       "search.lr={low: 0.01, high: 0.1}", "model.width=4", "data.split_seed=3", "enqueue=[]"])
    assert raw["budget"]["trials"] == 12 and raw["sampler"]["n_startup_trials"] == 2 and raw["pruner"] == "none"
    assert raw["search"]["lr"] == {"low": 0.01, "high": 0.1}
    assert TINY_STUDY["budget"]["trials"] == 6, "the original is untouched"
    spec = parse_study(raw, "x.yaml")
    assert spec.model.args == {"width": 4} and spec.data.split_seed == 3


def test_override_of_a_string_sampler_gets_a_mapping():
    raw = apply_overrides({"sampler": "tpe"}, ["sampler.n_startup_trials=3"])
    assert raw["sampler"] == {"name": "tpe", "n_startup_trials": 3}


def test_shipped_digits_study_validates():
    spec = load_study(REPO / "studies" / "digits.yaml")
    assert spec.name == "digits" and spec.budget.trials >= 20
    assert "momentum" in spec.search.searched


def test_file_errors(tmp_path):
    with pytest.raises(UserError, match="no such study file"):
        load_study(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY_STUDY, "budget": {"trials": -1}}))
    with pytest.raises(SpecError, match=r"bad.yaml: budget.trials: must be an integer from 1 to 100,000, got -1"):
        load_study(bad)
    with pytest.raises(SpecError, match=r"\(with --set budget.trials=0\): budget.trials"):
        load_study(bad, ["budget.trials=0"])


def test_missing_required_registry_argument():
    from hpo.models import MODELS, register_model
    if "needs_depth_for_tests" not in MODELS:
        @register_model("needs_depth_for_tests")
        def needs_depth(num_classes, in_channels, image_size, depth):
            raise AssertionError("never built in this test")
    raw = {**TINY_STUDY, "model": {"name": "needs_depth_for_tests"}}
    with pytest.raises(SpecError, match="model.depth: is required by model 'needs_depth_for_tests'"):
        parse_study(raw, "x.yaml")


def test_loader_options_checked_with_the_file_not_the_data(tmp_path):
    """The folder loader's rules judge its options when the study is read; the folder is opened only by hpo run."""
    study = {**TINY_STUDY, "data": {"name": "folder", "root": str(tmp_path / "not-yet-copied"), "stream": True,
                                    "workers": 0, "decode": "device", "channels": 1, "size": 16}}
    assert parse_study(study, "x.yaml").data.args["decode"] == "device"
    for field, value in (("stream", "sometimes"), ("workers", -2), ("decode", "gpu"), ("channels", 2)):
        bad = {**study, "data": {**study["data"], field: value}}
        with pytest.raises(SpecError, match=rf"^x.yaml: data.{field}: must be .*got {value!r}$") as raised:
            parse_study(bad, "x.yaml")
        assert raised.value.field == f"data.{field}"


def test_registry_check_runs_the_registered_rule():
    from hpo.core.registry import Registry

    calls = []
    things = Registry("thing")
    things.register("checked", check=lambda **args: calls.append(args))(lambda size=1: size)
    things.register("plain")(lambda size=1: size)
    things.check("checked", {"size": 3})
    things.check("plain", {"size": -1})  # no rule registered: nothing to judge
    assert calls == [{"size": 3}]
    with pytest.raises(KeyError, match="unknown thing 'other'; allowed: checked, plain"):
        things.check("other", {})
