"""What a base model is: its family (the weights adapters are trained on) and the
variant served (bf16, or a quantized checkpoint of the same family)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


class ModelError(RuntimeError):
    """A model folder is missing, wrong or corrupt, or making one failed; the message
    names the folder and the problem."""


@dataclass(frozen=True)
class Quantization:
    """A checkpoint's quantization as its ``config.json`` states it (vLLM reads the same).
    A field is None where the checkpoint does not say; ``activation_bits`` None means the
    activations stay 16-bit."""

    method: str
    format: str
    weight_bits: int | None
    activation_bits: int | None
    group_size: int | None

    @property
    def variant(self) -> str:
        """``w4a16-g32``, ``w8a8``; the method's name where the bits are unknown."""
        if self.weight_bits is None:
            return self.method
        name = f"w{self.weight_bits}a{self.activation_bits or 16}"
        return f"{name}-g{self.group_size}" if self.group_size else name


@dataclass(frozen=True)
class ModelInfo:
    """Identity of the base model the engine serves; adapters are checked against it.

    ``fingerprint`` names the family: the unquantized weights adapters are trained on,
    the same for every variant. ``source`` is that unquantized folder when this one is a
    quantized checkpoint and the folder is on this machine.
    """

    name: str
    path: Path
    fingerprint: str
    variant: str = "bf16"
    source: Path | None = None
    quantization: Quantization | None = None

    def unquantized(self) -> ModelInfo:
        """The sibling that training and merging read: a quantized checkpoint's source,
        or this model itself when it is not quantized."""
        if self.quantization is None:
            return self
        if self.source is None:
            raise ModelError(
                f"{self.path} is a quantized checkpoint ({self.variant}) whose unquantized "
                "source is not on this machine; training and merging need those weights"
            )
        config = json.loads((self.source / "config.json").read_text(encoding="utf-8"))
        variant = unquantized_variant(config)
        return replace(self, path=self.source, variant=variant, source=None, quantization=None)

    def describe(self) -> dict[str, Any]:
        """The identity as JSON, as ``gateway model pull`` prints it."""
        return {
            "name": self.name,
            "path": str(self.path),
            "fingerprint": self.fingerprint,
            "variant": self.variant,
            "source": str(self.source) if self.source else None,
            "quantization": vars(self.quantization) if self.quantization else None,
        }


DTYPE_VARIANTS = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def unquantized_variant(config: dict[str, Any]) -> str:
    """An unquantized model's variant is its weights' dtype (``bf16`` for the default)."""
    dtype = config.get("dtype") or config.get("torch_dtype")
    return DTYPE_VARIANTS.get(str(dtype), f"unquantized ({dtype})")


def read_quantization(config: dict[str, Any]) -> Quantization | None:
    """The ``quantization_config`` of a ``config.json``, None when it has none.
    compressed-tensors states one scheme per group: with several groups the bits are
    left unknown rather than taken from one of them."""
    spec = config.get("quantization_config")
    if not spec:
        return None
    method = str(spec.get("quant_method", "unknown"))
    if method != "compressed-tensors":
        bits, group = spec.get("bits"), spec.get("group_size")
        return Quantization(method, str(spec.get("format", method)), bits, None, group)
    groups = list((spec.get("config_groups") or {}).values())
    if len(groups) != 1:
        return Quantization(method, str(spec.get("format")), None, None, None)
    weights = groups[0].get("weights") or {}
    inputs = groups[0].get("input_activations") or {}
    group = weights.get("group_size") if weights.get("strategy") == "group" else None
    return Quantization(
        method, str(spec.get("format")), weights.get("num_bits"), inputs.get("num_bits"), group
    )
