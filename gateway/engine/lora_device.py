"""A narrow fix for vLLM's LoRA device lookup on layers that gave up their weight.

vLLM 0.32's CPU int8 kernel (``CPUInt8ScaledMMLinearKernel``) hands a W8A8 layer's
weight to oneDNN and sets ``layer.weight = None`` on CPUs without AMX. vLLM's
``_get_lora_device`` then reads ``None.device`` and LoRA start-up crashes
(vllm-project/vllm#57503). The fix is applied only when the installed vLLM still has
the bug, probed on a module built for the purpose, so it disappears by itself once
vLLM ships the upstream fix; it runs in the engine process (see ``worker_ext``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# Attributes vLLM's own lookup reads, in its order; a None one is skipped, not fatal.
WEIGHT_ATTRIBUTES = (
    "weight", "weight_packed", "qweight", "w2_weight", "w2_weight_packed", "w2_qweight",
)  # fmt: skip
# Modules that imported ``_get_lora_device`` by name and so hold their own reference.
USERS = ("vllm.lora.layers.utils", "vllm.lora.layers.base_linear", "vllm.lora.layers.fused_moe")
_replaced: dict[str, Callable[[Any], Any]] = {}  # module -> vLLM's own lookup, once patched


def lora_device(base_layer: Any) -> Any:
    """The device of the first tensor the layer still holds, in vLLM's order of preference."""
    layer = getattr(base_layer, "routed_experts", base_layer)
    for name in WEIGHT_ATTRIBUTES:
        tensor = getattr(layer, name, None)
        if tensor is not None and hasattr(tensor, "device"):
            return tensor.device
    ark = getattr(layer, "ark_linear", None)
    if ark is not None:
        return ark.qweight.device
    for tensor in (*layer.parameters(recurse=False), *layer.buffers(recurse=False)):
        return tensor.device
    raise ValueError(f"Unsupported base layer: {type(base_layer).__name__} holds no tensor")


def needs_fix(lookup: Callable[[Any], Any]) -> bool:
    """True when ``lookup`` fails on a layer whose weight was released but whose scale
    is still there (what the int8 CPU kernel leaves behind)."""
    import torch

    probe = torch.nn.Module()
    probe.register_parameter("weight", None)
    probe.register_parameter("weight_scale", torch.nn.Parameter(torch.ones(1), False))
    try:
        lookup(probe)
    except AttributeError:
        return True
    return False


def vllm_lookup() -> Callable[[Any], Any]:
    """vLLM's own ``_get_lora_device``, even after ``apply_if_needed`` replaced it."""
    from vllm.lora.layers import utils

    return _replaced.get(utils.__name__, utils._get_lora_device)


def apply_if_needed() -> bool:
    """Install ``lora_device`` in vLLM's LoRA layers if vLLM's own lookup has the bug."""
    import importlib

    if _replaced or not needs_fix(vllm_lookup()):
        return False
    for name in USERS:
        module = importlib.import_module(name)
        if hasattr(module, "_get_lora_device"):
            _replaced[name] = module._get_lora_device
            module._get_lora_device = lora_device  # type: ignore[attr-defined]
    log.info("patched vLLM's LoRA device lookup for weight-less quantized layers (vllm#57503)")
    return True
