"""``gateway-tools bench lora-ops``: one linear layer's LoRA term, timed in isolation.

The engine-level numbers (``gateway-tools bench perf``) say how much an adapter costs a served
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
from pathlib import Path

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


def main(args: argparse.Namespace) -> int:
    import torch

    from gateway_tools.bench.lora_timing import time_layer

    torch.set_num_threads(args.threads)
    rows = []
    for shape, (width, slices) in SHAPES.items():
        for tokens in args.tokens:
            for adapters in args.adapters:
                row = time_layer(
                    shape=shape, width=width, slices=slices, tokens=tokens, adapters=adapters,
                    slots=args.slots, slot_rank=args.slot_rank, rank=args.rank,
                    repeats=args.repeats,
                )  # fmt: skip
                print(json.dumps(row), flush=True)
                rows.append(row)
    result = {"command": "gateway-tools bench lora-ops", "settings": vars(args) | {"func": None},
              "torch": torch.__version__, "rows": rows}  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0
