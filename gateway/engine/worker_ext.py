"""Code the gateway runs inside vLLM's engine process, as a worker extension.

vLLM mixes ``GatewayWorkerExtension`` into its worker class (engine argument
``worker_extension_cls``), so importing this module happens in the engine process before
the model loads: the place to apply ``lora_device``'s fix, and the only place that can
see the loaded model, which is what ``quantization_summary`` reports from (and which
LoRA path its process runs: ``gateway_lora_path``). The gateway
asks for it with ``collective_rpc``; the method names carry a ``gateway_`` prefix
because vLLM refuses an extension whose attribute names clash with the worker's.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from gateway.engine import lora_device

lora_device.apply_if_needed()


def quantization_summary(model: Any) -> dict[str, Any]:
    """What is really quantized in ``model``: its linear layers by scheme and kernel.
    (Bits and group size are the checkpoint's, read by the gateway from its config.)"""
    from vllm.model_executor.layers.linear import LinearBase

    methods: Counter[str] = Counter()
    schemes: Counter[str] = Counter()
    kernels: Counter[str] = Counter()
    total = 0
    for module in model.modules():
        if not isinstance(module, LinearBase):
            continue
        total += 1
        method = type(module.quant_method).__name__
        methods[method] += 1
        scheme = getattr(module, "scheme", None)
        if scheme is not None:
            schemes[type(scheme).__name__] += 1
        kernel = getattr(scheme, "kernel", None) or getattr(module.quant_method, "kernel", None)
        if kernel is not None:
            kernels[type(kernel).__name__] += 1
    quantized = total - methods.get("UnquantizedLinearMethod", 0)
    return {
        "linear_layers": total,
        "quantized_layers": quantized,
        "methods": dict(methods),
        "schemes": dict(schemes),
        "kernels": dict(kernels),
    }


class GatewayWorkerExtension:
    """Mixed into vLLM's worker; ``self`` is the worker."""

    def gateway_quantization_summary(self) -> dict[str, Any]:
        return quantization_summary(self.model_runner.get_model())  # type: ignore[attr-defined]

    def gateway_lora_path(self) -> dict[str, Any]:
        from gateway.engine.grouped_lora import plugin

        return plugin.status()

    def gateway_death_signal(self) -> int:
        """The signal this worker gets when the engine core dies (``common.lifeline``)."""
        from gateway.common import lifeline

        return lifeline.death_signal()
