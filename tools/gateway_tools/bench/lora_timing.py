"""One linear layer's LoRA term timed three ways, for ``gateway-tools bench lora-ops``.

It drives vLLM's punica wrapper and ops and the gateway's grouped LoRA directly: a tool,
not part of the server (only the product keeps vLLM inside ``gateway.engine``).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from vllm.lora.layers import LoRAMapping
from vllm.lora.ops import torch_ops
from vllm.lora.punica_wrapper import punica_cpu

from gateway.engine.grouped_lora import fused, kernel, ops, plugin


def _time(call: Any, repeats: int) -> float:
    for _ in range(10):
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples) * 1e6, 1)


def _use_ops(module: Any) -> None:
    for name in plugin.PATCHED:
        setattr(punica_cpu, name, getattr(module, name))


def time_layer(
    *,
    shape: str,
    width: int,
    slices: tuple[int, ...],
    tokens: int,
    adapters: int,
    slots: int,
    slot_rank: int,
    rank: int,
    repeats: int,
) -> dict[str, Any]:
    """Microseconds per ``add_lora_linear`` call with vLLM's ops, grouped, fused (with the C
    kernel where the batch is decode-sized and the kernel built) and fused with torch
    alone, and the base product beside them; vLLM's own ops are restored before returning."""
    vllm_linear = fused.ORIGINAL or punica_cpu.PunicaWrapperCPU.add_lora_linear
    fused.ORIGINAL = vllm_linear
    ids = list(range(1, slots + 1))
    prefill = tokens > ops.STACK_MAX_TOKENS
    per = max(1, tokens // adapters)  # prefill: runs per adapter; decode: interleaved
    token_ids = [ids[(i // per if prefill else i) % adapters] for i in range(tokens)]
    wrapper = punica_cpu.PunicaWrapperCPU(max(tokens, 256), 256, device="cpu")
    mapping = LoRAMapping(tuple(token_ids), tuple(token_ids), is_prefill=prefill)
    wrapper.update_metadata(mapping, ids, slots, 100)
    gen = torch.Generator().manual_seed(0)
    a = tuple(torch.randn(slots, 1, slot_rank, width, generator=gen) * 0.1 for _ in slices)
    for stacked in a:
        stacked[:, :, rank:] = 0  # smaller adapters are zero-padded
    a = tuple(t.bfloat16() for t in a)
    b = tuple(
        (torch.randn(slots, 1, out, slot_rank, generator=gen) * 0.1).bfloat16() for out in slices
    )
    x = torch.randn(tokens, width, generator=gen).bfloat16()
    y = torch.zeros(tokens, sum(slices), dtype=torch.bfloat16)
    weight = torch.randn(sum(slices), width, generator=gen).bfloat16()
    row: dict[str, Any] = {"shape": shape, "tokens": tokens, "adapters": adapters}
    kernel_max = fused.KERNEL_MAX_TOKENS
    try:
        _use_ops(torch_ops)
        row["vllm_us"] = _time(
            lambda: vllm_linear(wrapper, y, x, a, b, 2.0, slices), max(20, repeats // 10)
        )
        _use_ops(ops)
        row["grouped_us"] = _time(lambda: vllm_linear(wrapper, y, x, a, b, 2.0, slices), repeats)
        row["fused_us"] = _time(
            lambda: fused.add_lora_linear(wrapper, y, x, a, b, 2.0, slices), repeats
        )
        row["kernel"] = tokens <= fused.KERNEL_MAX_TOKENS and kernel.load() is not None
        fused.KERNEL_MAX_TOKENS = 0  # the fused torch path alone, for the comparison
        row["fused_torch_us"] = _time(
            lambda: fused.add_lora_linear(wrapper, y, x, a, b, 2.0, slices), repeats
        )
    finally:
        fused.KERNEL_MAX_TOKENS = kernel_max
        _use_ops(torch_ops)
    row["base_linear_us"] = _time(lambda: torch.nn.functional.linear(x, weight), repeats)
    row["fused_over_base"] = round(row["fused_us"] / row["base_linear_us"], 3)
    return row
