"""What a folder is: its variant and quantization from its own config, its family from
the manifest of a checkpoint we made, and the first difference a manifest check finds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.models import MANIFEST, ModelError, fingerprint_dir, resolve_model
from gateway.models.files import manifest_problem
from gateway.models.info import Quantization, read_quantization
from tests.unit.models.checkpoints import W4A16_CONFIG, source_model

W8A8_CONFIG = {
    "quant_method": "compressed-tensors", "format": "int-quantized",
    "config_groups": {"group_0": {
        "targets": ["Linear"],
        "weights": {"num_bits": 8, "strategy": "channel", "group_size": None},
        "input_activations": {"num_bits": 8, "strategy": "token", "dynamic": True},
    }},
}  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "expected", "variant"),
    [
        (W4A16_CONFIG, Quantization("compressed-tensors", "pack-quantized", 4, None, 32),
         "w4a16-g32"),
        (W8A8_CONFIG, Quantization("compressed-tensors", "int-quantized", 8, 8, None), "w8a8"),
        ({"quant_method": "gptq", "bits": 4, "group_size": 128},
         Quantization("gptq", "gptq", 4, None, 128), "w4a16-g128"),
        ({**W4A16_CONFIG, "config_groups": {"a": {}, "b": {}}},
         Quantization("compressed-tensors", "pack-quantized", None, None, None),
         "compressed-tensors"),
    ],
    ids=["w4a16", "w8a8", "gptq", "two-groups"],
)  # fmt: skip
def test_the_quantization_a_config_states(spec: dict, expected: Quantization, variant: str) -> None:
    stated = read_quantization({"quantization_config": spec})
    assert (stated, stated.variant if stated else None) == (expected, variant)
    assert read_quantization({"hidden_size": 64}) is None


def test_a_foreign_quantized_folder_serves_but_does_not_train(tmp_path: Path) -> None:
    folder = source_model(tmp_path / "m", quantization_config=W8A8_CONFIG)
    info = resolve_model(folder, tmp_path / "cache", "w4a16")  # the variant is the default's
    assert (info.variant, info.source, info.fingerprint) == ("w8a8", None, fingerprint_dir(folder))
    with pytest.raises(ModelError, match="quantized checkpoint \\(w8a8\\) whose unquantized"):
        info.unquantized()


def test_an_unquantized_folder_is_its_own_training_base(tmp_path: Path) -> None:
    info = resolve_model(source_model(tmp_path / "m", dtype="float32"), tmp_path / "cache")
    assert (info.variant, info.quantization, info.unquantized()) == ("fp32", None, info)


def test_the_first_difference_is_named(tmp_path: Path) -> None:
    folder = source_model(tmp_path / "m")
    assert manifest_problem(folder) == f"{MANIFEST} is missing"
    (folder / MANIFEST).write_text(json.dumps({"files": {}}))
    assert manifest_problem(folder) == f"{MANIFEST} lists no files"
    digest = fingerprint_dir(folder)  # any hash that is not config.json's
    (folder / MANIFEST).write_text(json.dumps({"files": {"config.json": digest, "x": digest}}))
    assert manifest_problem(folder) == f"config.json does not match its hash in {MANIFEST}"
    (folder / "config.json").unlink()
    assert manifest_problem(folder) == "config.json is missing"


def test_model_pull_prints_the_identity(
    tmp_path: Path,
    gateway_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = source_model(tmp_path / "m")
    monkeypatch.setenv("GATEWAY_MODEL_DIR", str(folder))
    assert main(["model", "pull"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "name": "m", "path": str(folder), "fingerprint": fingerprint_dir(folder),
        "variant": "bf16", "source": None, "quantization": None,
    }  # fmt: skip
