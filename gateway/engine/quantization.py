"""What the base model really is: quantized as the settings and checkpoint say, or not.

The engine process counts the quantized linear layers of the loaded model
(``worker_ext``); this module joins that count with what was asked for and refuses a
quantization that quantized nothing: vLLM 0.32's ``int8_per_channel_weight_only`` on a
dense model loads full precision while every report would say int8.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class QuantizationRefused(RuntimeError):
    """The settings or checkpoint ask for quantization the loaded engine did not do."""


def declared_quantization(quantization: str | None, model_path: str) -> dict[str, Any]:
    """What the settings and the checkpoint ask for: an online method, or the
    checkpoint's own ``quantization_config`` (its format, bits and group size)."""
    if quantization:
        return {"method": quantization, "source": "online"}
    config = json.loads((Path(model_path) / "config.json").read_text())
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return {"method": "none", "source": "none"}
    declared: dict[str, Any] = {"method": str(quant.get("quant_method", "unknown"))}
    declared["source"] = "checkpoint"
    declared["format"] = quant.get("format")
    for group in (quant.get("config_groups") or {}).values():
        weights = group.get("weights") or {}
        declared["weight_bits"] = weights.get("num_bits")
        declared["group_size"] = weights.get("group_size")
        activations = group.get("input_activations") or {}
        declared["activation_bits"] = activations.get("num_bits")
        break
    return declared


def checked_summary(
    engine_summary: dict[str, Any], quantization: str | None, model_path: str
) -> dict[str, Any]:
    """The engine's layer count joined with what was declared (the online method, or
    the checkpoint's config), logged; refused when a declared quantization quantized no
    layer."""
    summary = {**engine_summary, **declared_quantization(quantization, model_path)}
    log.info(
        "base model quantization: %s, %d of %d linear layers quantized, kernels %s",
        summary["method"], summary["quantized_layers"], summary["linear_layers"],
        summary["kernels"] or "none",
    )  # fmt: skip
    if summary["method"] != "none" and summary["quantized_layers"] == 0:
        raise QuantizationRefused(
            f"quantization {summary['method']!r} quantized 0 of "
            f"{summary['linear_layers']} linear layers of {model_path}; "
            "refusing to serve full precision as quantized (set quantization: none, or "
            "serve a quantized checkpoint: gateway model quantize)"
        )
    return summary
