"""What the gateway reports as quantized is what the engine quantized, or start-up fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.engine.quantization import QuantizationRefused, checked_summary

W4A16 = {
    "quant_method": "compressed-tensors", "format": "pack-quantized",
    "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None,
                                  "weights": {"num_bits": 4, "group_size": 32}}},
}  # fmt: skip


def options(folder: Path, quantization: str | None = None, **config: object) -> tuple:
    """(online method, model folder) with ``config`` as the folder's config.json."""
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", **config}))
    return quantization, str(folder)


def counted(quantized: int, total: int = 120) -> dict[str, object]:
    kernels = {"CPUWNA16LinearKernel": quantized} if quantized else {}
    return {"linear_layers": total, "quantized_layers": quantized, "kernels": kernels}


def test_a_checkpoint_reports_its_bits_and_the_engines_layer_count(tmp_path: Path) -> None:
    summary = checked_summary(counted(120), *options(tmp_path, quantization_config=W4A16))
    assert summary["method"] == "compressed-tensors" and summary["source"] == "checkpoint"
    assert (summary["weight_bits"], summary["group_size"], summary["quantized_layers"]) == (
        4, 32, 120,
    )  # fmt: skip


def test_an_online_method_that_quantized_nothing_is_refused(tmp_path: Path) -> None:
    opts = options(tmp_path, "int8_per_channel_weight_only")
    with pytest.raises(QuantizationRefused, match="quantized 0 of 120 linear layers"):
        checked_summary(counted(0), *opts)


def test_a_checkpoint_whose_layers_all_stayed_dense_is_refused(tmp_path: Path) -> None:
    with pytest.raises(QuantizationRefused):
        checked_summary(counted(0), *options(tmp_path, quantization_config=W4A16))


def test_an_unquantized_model_is_reported_as_such(tmp_path: Path) -> None:
    summary = checked_summary(counted(0), *options(tmp_path))
    assert summary["method"] == "none" and summary["quantized_layers"] == 0
