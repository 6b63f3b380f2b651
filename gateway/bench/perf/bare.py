"""Side A: the bare ``AsyncLLM`` in this process, no HTTP, same engine arguments.

Run as a child of the harness (``python -m gateway.bench.perf.bare SPEC OUT``) so each
round starts a fresh engine, as the HTTP sides do. Prompts are tokenised before the
clock starts: the bare side is the engine's ceiling, with nothing else in the way.
Each cell's summary is appended to OUT as one JSON line the moment it finishes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from gateway.bench.perf.loadgen import Record
from gateway.bench.perf.runner import run_cell
from gateway.bench.perf.workload import Cell, Workload


async def run(spec: dict[str, Any], out: Path) -> None:
    from transformers import AutoTokenizer
    from vllm.lora.request import LoRARequest
    from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams
    from vllm.v1.engine.async_llm import AsyncLLM

    from gateway.config import Settings
    from gateway.engine.vllm_engine import engine_args
    from gateway.server import engine_options

    workload = Workload.from_json(spec["workload"])
    cells = [Cell(**c) for c in spec["cells"]]
    options, _ = engine_options(Settings())
    started = time.perf_counter()
    llm = AsyncLLM.from_engine_args(engine_args(options))
    tokenizer = AutoTokenizer.from_pretrained(options.model_path)
    adapters: dict[str, str] = spec["adapters"]
    loras = {name: LoRARequest(name, i + 1, p) for i, (name, p) in enumerate(adapters.items())}
    prompt_ids: dict[str, list[int]] = {}
    for text in workload.prompts:
        ids = tokenizer.apply_chat_template(
            workload.messages(text), add_generation_prompt=True, tokenize=True, return_dict=False
        )
        prompt_ids[text] = list(ids["input_ids"] if hasattr(ids, "input_ids") else ids)

    def params(constrained: bool, max_tokens: int) -> Any:
        structured = StructuredOutputsParams(json=workload.schema) if constrained else None
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=0,
            structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA,
        )

    async def one(adapter: str, text: str, constrained: bool, max_tokens: int) -> Record:
        begin = time.perf_counter()
        ttft = None
        tokens = 0
        try:
            async for output in llm.generate(
                {"prompt_token_ids": prompt_ids[text]},
                params(constrained, max_tokens),
                uuid.uuid4().hex,
                lora_request=loras[adapter],
            ):
                new = len(output.outputs[0].token_ids)
                if new and ttft is None:
                    ttft = time.perf_counter() - begin
                tokens += new
        except Exception as exc:  # a failed request is a counted error, not a lost run
            return Record(False, time.perf_counter() - begin, ttft, error=type(exc).__name__,
                          started=begin)  # fmt: skip
        return Record(True, time.perf_counter() - begin, ttft, tokens, started=begin)

    # Warm-up, untimed: every adapter loaded, the schema's grammar compiled.
    for name in loras:
        await one(name, workload.prompts[0], True, workload.max_tokens)
    with out.open("a") as sink:
        sink.write(json.dumps({"ready_s": round(time.perf_counter() - started, 2)}) + "\n")
    for cell in cells:

        async def send(i: int, cell: Cell = cell) -> Record:
            return await one(*workload.request(cell, i), cell.max_tokens or workload.max_tokens)

        summary = await run_cell(send, workload, cell, os.getpid(), "bare")
        with out.open("a") as sink:
            sink.write(json.dumps({"cell": cell.key, "summary": summary}) + "\n")
    llm.shutdown()


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(run(spec, Path(sys.argv[2])))


if __name__ == "__main__":
    main()
