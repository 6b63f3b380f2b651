"""Side A: the bare ``AsyncLLM`` in this process, no HTTP, same engine arguments.

Run as a child of the harness (``python -m gateway_tools.bench.perf.bare SPEC OUT``) so each
round starts a fresh engine, as the HTTP sides do. Prompts are tokenised (by the
gateway's own renderer) before the clock starts: the bare side is the engine's ceiling,
with nothing else in the way.
Each cell's summary is appended to OUT as one JSON line the moment it finishes. With
``serve`` in the spec it runs no cells but answers requests of the first cell one at a
time on that Unix socket (JSON both ways), so the harness can interleave them with the
gateway's (``perf/paired.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from multiprocessing.connection import Listener
from pathlib import Path
from typing import Any

from gateway.common.prompts import render_prompt
from gateway.engine.types import GenerationParams, LoraRef
from gateway_tools.bench.perf.loadgen import Record
from gateway_tools.bench.perf.runner import run_cell
from gateway_tools.bench.perf.workload import Cell, Workload


async def run(spec: dict[str, Any], out: Path) -> None:
    from transformers import AutoTokenizer

    from gateway.config import Settings
    from gateway.engine.factory import engine_options
    from gateway.engine.vllm_engine import build_llm, lora_request, sampling_params

    workload = Workload.from_json(spec["workload"])
    cells = [Cell(**c) for c in spec["cells"]]
    options, _ = engine_options(Settings())
    started = time.perf_counter()
    llm = build_llm(options)
    tokenizer = AutoTokenizer.from_pretrained(options.model_path)
    adapters: dict[str, str] = spec["adapters"]
    loras = {
        name: lora_request(LoraRef(name, i + 1, p)) for i, (name, p) in enumerate(adapters.items())
    }
    prompt_ids: dict[str, list[int]] = {}
    for cell in [*workload.warmup(), *cells]:
        for i in range(cell.requests):
            text = workload.request(cell, i)[1]
            if text not in prompt_ids:
                prompt_ids[text] = render_prompt(tokenizer, workload.messages(text))

    def params(text: str, constrained: bool, max_tokens: int, fixed: bool) -> Any:
        schema = workload.schema if constrained else None
        return sampling_params(
            GenerationParams(uuid.uuid4().hex, prompt_ids[text], max_tokens,
                             min_tokens=max_tokens if fixed else 0, json_schema=schema)
        )  # fmt: skip

    async def one(
        adapter: str | None, text: str, constrained: bool, max_tokens: int, fixed: bool = False
    ) -> Record:
        begin = time.perf_counter()
        ttft = None
        tokens = 0
        try:
            async for output in llm.generate(
                {"prompt_token_ids": prompt_ids[text]},
                params(text, constrained, max_tokens, fixed),
                uuid.uuid4().hex,
                lora_request=None if adapter is None else loras[adapter],
            ):
                new = len(output.outputs[0].token_ids)
                if new and ttft is None:
                    ttft = time.perf_counter() - begin
                tokens += new
        except Exception as exc:  # a failed request is a counted error, not a lost run
            return Record(False, time.perf_counter() - begin, ttft, error=type(exc).__name__,
                          started=begin)  # fmt: skip
        return Record(True, time.perf_counter() - begin, ttft, tokens, started=begin,
                      prompt_tokens=len(prompt_ids[text]))  # fmt: skip

    async def request(cell: Cell, i: int) -> Record:
        return await one(
            *workload.request(cell, i), cell.max_tokens or workload.max_tokens, cell.fixed
        )

    for warm in workload.warmup():  # untimed, as on the HTTP sides
        for i in range(warm.requests):
            await request(warm, i)
    with out.open("a") as sink:
        sink.write(json.dumps({"ready_s": round(time.perf_counter() - started, 2)}) + "\n")
    if spec["serve"]:
        await serve(Path(spec["serve"]), cells[0], request)
    else:
        for cell in cells:

            async def send(i: int, cell: Cell = cell) -> Record:
                return await request(cell, i)

            summary = await run_cell(send, workload, cell, os.getpid(), "bare")
            with out.open("a") as sink:
                sink.write(json.dumps({"cell": cell.key, "summary": summary}) + "\n")
    llm.shutdown()


async def serve(
    socket: Path, cell: Cell, request: Callable[[Cell, int], Awaitable[Record]]
) -> None:
    """Answer ``{"i": n}`` with request ``n`` of ``cell``'s record, until ``{"stop": true}``."""
    with Listener(str(socket), family="AF_UNIX") as listener, listener.accept() as conn:
        while True:
            message = json.loads(await asyncio.to_thread(conn.recv_bytes))
            if message.get("stop"):
                return
            record = await request(cell, int(message["i"]))
            conn.send_bytes(json.dumps(asdict(record)).encode())


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(run(spec, Path(sys.argv[2])))


if __name__ == "__main__":
    main()
