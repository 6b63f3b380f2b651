"""A job request: which adapter gets the version, and the training options it maps to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway import errors
from gateway.finetune.requests import JobRequest, target_adapter, train_options, version_name
from gateway.tenancy import Tenant, hash_key

ACME = Tenant(name="acme", key_hashes=[hash_key("k" * 20)], allowed_adapters=["acme-intents"],
              default_adapter="acme-intents")  # fmt: skip
EVERYONE = Tenant(name="all", key_hashes=[hash_key("j" * 20)], allowed_adapters=["*"])


def request(**fields: Any) -> JobRequest:
    return JobRequest(**{"model": "base", "training_file": "file-x", **fields})


def test_the_adapter_comes_from_the_extension_the_model_or_the_default() -> None:
    assert target_adapter(request(), ACME, "base") == "acme-intents"
    assert target_adapter(request(model="acme-intents"), ACME, "base") == "acme-intents"
    extension = request(gateway={"adapter": "acme-intents"})
    assert target_adapter(extension, None, "base") == "acme-intents"  # open mode


def test_versions_go_only_to_adapters_a_tenant_is_given_by_name() -> None:
    with pytest.raises(errors.AdapterForbidden):
        target_adapter(request(model="globex-intents"), ACME, "base")
    with pytest.raises(errors.AdapterForbidden):  # "*" is for using adapters, not writing
        target_adapter(request(gateway={"adapter": "acme-intents"}), EVERYONE, "base")
    with pytest.raises(errors.InvalidRequest, match="which adapter"):
        target_adapter(request(), EVERYONE, "base")
    with pytest.raises(errors.InvalidRequest, match="another"):
        target_adapter(request(model="acme-intents", gateway={"adapter": "x"}), ACME, "base")


def test_hyperparameters_map_onto_the_recipe(tmp_path: Path) -> None:
    job = request(method={"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5}}},
        gateway={"labels": ["billing", "other"], "answer": "json"})  # fmt: skip
    fixed = {"data": str(tmp_path / "train.jsonl"), "out_root": str(tmp_path)}
    options = train_options(job, "acme-intents", "ft-1", 7, fixed)
    assert (options["epochs"], options["batch_size"], options["learning_rate"]) == (2, 4, 5e-4)
    assert options["labels"] == ["billing", "other"] and options["answer"] == "json"
    assert (options["name"], options["version"], options["seed"]) == ("acme-intents", "ft-1", 7)
    auto = train_options(request(), "acme-intents", "ft-1", 7, fixed)
    assert (auto["epochs"], auto["batch_size"], auto["learning_rate"]) == ("auto", "auto", 1e-3)


def test_mistakes_are_refused_before_a_job_exists() -> None:
    nested = {"type": "supervised", "supervised": {"hyperparameters": {}}}
    both = request(hyperparameters={"n_epochs": 1}, method=nested)
    with pytest.raises(errors.InvalidRequest, match="not both"):
        both.chosen_hyperparameters()
    for bad in (
        {"hyperparameters": {"n_epochs": 0}},
        {"hyperparameters": {"learning_rate_multiplier": "fast"}},
        {"method": {"type": "dpo"}},
        {"suffix": "../x"},
        {"gateway": {"promote_if": {"min_accuracy": 2}}},
        {"integrations": []},
    ):
        with pytest.raises(ValidationError):
            request(**bad)


def test_an_unknown_schema_is_refused_with_the_training_options(tmp_path: Path) -> None:
    fixed = {"data": str(tmp_path / "train.jsonl")}
    with pytest.raises(errors.InvalidRequest, match="schema_name must be one of"):
        train_options(request(gateway={"schema_name": "nope"}), "a", "ft-1", 0, fixed)


def test_version_names_carry_the_suffix_and_the_job() -> None:
    assert version_name("ftjob-0123456789abcdef01234567", None) == "ft-0123456789ab"
    assert version_name("ftjob-0123456789abcdef01234567", "shop") == "ft-shop-0123456789ab"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_epochs", "3"),  # a string number (issue 33: it made a real job)
        ("n_epochs", 2.0),
        ("batch_size", True),
        ("batch_size", 257),
        ("learning_rate_multiplier", 1e-320),  # a denormal (issue 33: it made a real job)
        ("learning_rate_multiplier", "0.5"),
        ("learning_rate_multiplier", 0),
        ("learning_rate_multiplier", float("nan")),
        ("learning_rate_multiplier", 10.5),
    ],
)
def test_hyperparameters_are_json_numbers_in_range(field: str, value: Any) -> None:
    for where in ({"hyperparameters": {field: value}}, {"method": {"type": "supervised",
                  "supervised": {"hyperparameters": {field: value}}}}):  # fmt: skip
        with pytest.raises(ValidationError) as refused:
            request(**where)
        first = refused.value.errors()[0]
        assert first["loc"][-1] == field and len(refused.value.errors()) == 1, first


def test_numbers_in_range_and_auto_are_taken() -> None:
    chosen = {"n_epochs": 50, "batch_size": 1, "learning_rate_multiplier": 2}
    hp = request(hyperparameters=chosen).chosen_hyperparameters()
    assert (hp.n_epochs, hp.batch_size, hp.learning_rate_multiplier) == (50, 1, 2)
    assert request(hyperparameters={"learning_rate_multiplier": 0.001}).hyperparameters
    assert request(hyperparameters={"n_epochs": "auto"}).chosen_hyperparameters().n_epochs == "auto"


@pytest.mark.parametrize(
    "fields",
    [{"seed": "7"}, {"seed": 1.0}, {"gateway": {"promote_if": {"min_accuracy": "0.5"}}},
     {"training_file": 7}, {"metadata": {"a": 1}}],
)  # fmt: skip
def test_other_fields_are_taken_only_in_their_json_type(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        request(**fields)
