"""``gateway bench lora-ops``: one linear layer's LoRA term, timed in isolation.

The engine-level numbers (``gateway bench perf``) say how much an adapter costs a served
request; this says where a LoRA path spends it, without an engine. For SmolLM2-135M's
shapes (q/k/v, gate/up, down), with the gateway's slot layout (``max_loras`` slots of
``max_lora_rank``, adapters of a smaller rank padded with zeros, as vLLM does), at a
decode-sized and a prefill-sized batch with one adapter and with eight, it times
``PunicaWrapperCPU.add_lora_linear`` three ways: with vLLM's own ops, with the grouped
ops, and fused (``gateway.engine.grouped_lora.fused``); and the base layer's own product
beside them. Prints and writes JSON (microseconds per call, medians of ``--repeats``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from gateway.config import REPO_ROOT

SHAPES = {  # name -> (input width, output slices)
    "qkv": (576, (576, 192, 192)),
    "gate_up": (576, (1536, 1536)),
    "down": (1536, (576,)),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(REPO_ROOT / "bench-results" / "lora-ops.json"))
    parser.add_argument("--tokens", type=int, nargs="+", default=[16, 1024])
    parser.add_argument("--adapters", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--slots", type=int, default=8, help="max_loras")
    parser.add_argument("--slot-rank", type=int, default=16, help="max_lora_rank")
    parser.add_argument("--rank", type=int, default=8, help="the adapters' own rank")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)


def _time(call: Any, repeats: int) -> float:
    for _ in range(10):
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples) * 1e6, 1)


def main(args: argparse.Namespace) -> int:
    import torch
    from vllm.lora.layers import LoRAMapping
    from vllm.lora.ops import torch_ops
    from vllm.lora.punica_wrapper import punica_cpu

    from gateway.engine.grouped_lora import fused, ops, plugin

    torch.set_num_threads(args.threads)
    vllm_linear = fused.ORIGINAL or punica_cpu.PunicaWrapperCPU.add_lora_linear
    fused.ORIGINAL = vllm_linear

    def use_ops(module: Any) -> None:
        for name in plugin.PATCHED:
            setattr(punica_cpu, name, getattr(module, name))

    ids = list(range(1, args.slots + 1))

    def case(
        shape: str, width: int, slices: tuple[int, ...], tokens: int, adapters: int
    ) -> dict[str, Any]:
        prefill = tokens > ops.STACK_MAX_TOKENS
        per = max(1, tokens // adapters)  # prefill: runs per adapter; decode: interleaved
        token_ids = [ids[(i // per if prefill else i) % adapters] for i in range(tokens)]
        wrapper = punica_cpu.PunicaWrapperCPU(max(tokens, 256), 256, device="cpu")
        mapping = LoRAMapping(tuple(token_ids), tuple(token_ids), is_prefill=prefill)
        wrapper.update_metadata(mapping, ids, args.slots, 100)
        gen = torch.Generator().manual_seed(0)
        a = tuple(
            torch.randn(args.slots, 1, args.slot_rank, width, generator=gen) * 0.1 for _ in slices
        )
        for stacked in a:
            stacked[:, :, args.rank :] = 0  # smaller adapters are zero-padded
        a = tuple(t.bfloat16() for t in a)
        b = tuple(
            (torch.randn(args.slots, 1, out, args.slot_rank, generator=gen) * 0.1).bfloat16()
            for out in slices
        )
        x = torch.randn(tokens, width, generator=gen).bfloat16()
        y = torch.zeros(tokens, sum(slices), dtype=torch.bfloat16)
        weight = torch.randn(sum(slices), width, generator=gen).bfloat16()
        row: dict[str, Any] = {"shape": shape, "tokens": tokens, "adapters": adapters}
        use_ops(torch_ops)
        row["vllm_us"] = _time(lambda: vllm_linear(wrapper, y, x, a, b, 2.0, slices),
                               max(20, args.repeats // 10))  # fmt: skip
        use_ops(ops)
        row["grouped_us"] = _time(
            lambda: vllm_linear(wrapper, y, x, a, b, 2.0, slices), args.repeats
        )
        row["fused_us"] = _time(
            lambda: fused.add_lora_linear(wrapper, y, x, a, b, 2.0, slices), args.repeats
        )
        row["base_linear_us"] = _time(lambda: torch.nn.functional.linear(x, weight), args.repeats)
        row["fused_over_base"] = round(row["fused_us"] / row["base_linear_us"], 3)
        print(json.dumps(row), flush=True)
        return row

    rows = [
        case(shape, width, slices, tokens, adapters)
        for shape, (width, slices) in SHAPES.items()
        for tokens in args.tokens
        for adapters in args.adapters
    ]
    use_ops(torch_ops)
    result = {"command": "gateway bench lora-ops", "settings": vars(args) | {"func": None},
              "torch": torch.__version__, "rows": rows}  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0
