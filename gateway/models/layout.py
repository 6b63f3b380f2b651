"""The Llama layout a quantizer has to respect: every linear layer's shape, read from
``config.json``, so a group size that does not fit is refused before any work, and the
tensors a finished checkpoint must hold can be listed."""

from __future__ import annotations

from typing import Any

from gateway.models.info import ModelError

LAYOUTS = ("LlamaForCausalLM",)  # the q/k/v/o + gate/up/down decoder this module knows
KERNEL_MULTIPLE = 32  # vLLM's CPU W4A16 kernel (cpu_gemm_wna16): K and N multiples of 32
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def linear_shapes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Projection -> (out_features N, in_features K) of one decoder layer."""
    architectures = config.get("architectures") or []
    if not set(architectures) & set(LAYOUTS):
        raise ModelError(
            f"quantize knows the {', '.join(LAYOUTS)} layout; this model is "
            f"{', '.join(architectures) or 'of no stated architecture'}"
        )
    try:
        hidden = int(config["hidden_size"])
        inner = int(config["intermediate_size"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or hidden // heads)
    except KeyError as exc:
        raise ModelError(f"config.json lacks {exc}") from exc
    q, kv = heads * head_dim, kv_heads * head_dim
    return {
        "q_proj": (q, hidden), "k_proj": (kv, hidden), "v_proj": (kv, hidden),
        "o_proj": (hidden, q), "gate_proj": (inner, hidden), "up_proj": (inner, hidden),
        "down_proj": (hidden, inner),
    }  # fmt: skip


def check_group_size(shapes: dict[str, tuple[int, int]], group_size: int) -> None:
    """Groups run along K, so the group size must divide every K; the CPU kernel also
    needs K and N in multiples of 32 and an even group size."""
    if group_size < 2 or group_size % 2:
        raise ModelError(f"group size {group_size} must be an even number >= 2")
    inputs = {k for _, k in shapes.values()}
    for name, (n, k) in shapes.items():
        if k % group_size:
            raise ModelError(
                f"group size {group_size} does not divide {name}'s input size {k}; "
                f"choose one that divides {' and '.join(map(str, sorted(inputs)))}"
            )
        if n % KERNEL_MULTIPLE or k % KERNEL_MULTIPLE:
            raise ModelError(
                f"{name} is {k}x{n}: vLLM's CPU W4A16 kernel needs both sizes in multiples "
                f"of {KERNEL_MULTIPLE}"
            )


Expected = dict[str, tuple[str | None, list[int]]]  # tensor -> (dtype or any, shape)


def expected_tensors(config: dict[str, Any], weight_bits: int, group_size: int | None) -> Expected:
    """The tensors every quantized linear layer must have in the checkpoint: 4-bit
    weights packed eight to an int32 (``weight_packed``), 8-bit ones as int8
    (``weight``), each with its scales per group or per output channel."""
    shapes = linear_shapes(config)
    expected: Expected = {}
    for layer in range(int(config["num_hidden_layers"])):
        for name, (n, k) in shapes.items():
            block = "mlp" if name in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            prefix = f"model.layers.{layer}.{block}.{name}"
            if weight_bits == 4:
                expected[f"{prefix}.weight_packed"] = ("I32", [n, k // 8])
            else:
                expected[f"{prefix}.weight"] = ("I8", [n, k])
            expected[f"{prefix}.weight_scale"] = (None, [n, k // group_size if group_size else 1])
    return expected
