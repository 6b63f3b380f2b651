"""The fixed workload every side runs: prompts, adapters, schema and the cell matrix.

Request ``i`` of a cell always gets the same prompt and adapter on every side, so the
sides differ only in what serves them. Cells with no adapter (``a0``) ask the base model,
so every report holds what LoRA costs against it.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from typing import Any

from gateway.config import REPO_ROOT
from gateway_tools.bench.data import banking77_texts
from schemas import intent_model

SOURCE_ADAPTER = REPO_ROOT / "adapters" / "banking77" / "v2"
SCHEMA_NAME = "intent_classification"
BASE_MODEL = "base"  # the ``model`` of a request without an adapter, on both HTTP servers
# A prefill cell's prompt: BANKING77 messages, one a line, until about 1,000 tokens of
# SmolLM2's tokenizer (3.7 to 4.3 characters a token on this text).
LONG_PROMPT_CHARS = 3900
LONG_PROMPTS = 4
PREFILL_REQUESTS = 8


@dataclass(frozen=True)
class Cell:
    """One measured configuration. ``rate`` set = open loop (Poisson arrivals);
    ``adapters`` 0 = the base model; ``long_prompt`` = a ~1,000-token prompt (prefill)."""

    adapters: int
    schema: bool
    concurrency: int
    requests: int
    rate: float | None = None
    max_tokens: int | None = None  # None = the workload's
    long_prompt: bool = False
    # every request generates exactly max_tokens (``min_tokens``): adapters and the base
    # model then write the same number of tokens, so LoRA / base compares like with like
    fixed: bool = False

    @property
    def key(self) -> str:
        load = f"r{self.rate:g}" if self.rate else f"c{self.concurrency}"
        tokens = f"-t{self.max_tokens}" if self.max_tokens else ""
        long = "-long" if self.long_prompt else ""
        fixed = "-fixed" if self.fixed else ""
        kind = "schema" if self.schema else "free"
        return f"{kind}-a{self.adapters}-{load}{tokens}{long}{fixed}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key}


@dataclass(frozen=True)
class Workload:
    prompts: tuple[str, ...]
    adapter_names: tuple[str, ...]  # the first ``cell.adapters`` of these are mixed
    system_prompt: str
    schema: dict[str, Any]
    max_tokens: int
    seed: int = 0
    long_prompts: tuple[str, ...] = ()

    def request(self, cell: Cell, i: int) -> tuple[str | None, str, bool]:
        """(adapter or None for the base model, user text, constrained) for request ``i``.

        A long prompt starts with its own ticket line, so no request of a run reuses
        another's cached prefix: every one is a full prefill, on every side alike."""
        adapter = self.adapter_names[i % cell.adapters] if cell.adapters else None
        if not cell.long_prompt:
            return adapter, self.prompts[i % len(self.prompts)], cell.schema
        if not self.long_prompts:
            raise ValueError(f"cell {cell.key} needs long prompts; this workload has none")
        text = f"Ticket {cell.key}/{i}:\n{self.long_prompts[i % len(self.long_prompts)]}"
        return adapter, text, cell.schema

    def warmup(self) -> list[Cell]:
        """Untimed cells every side runs first: each adapter loaded, the schema's grammar
        compiled, the base model and one long prefill run once (its ``-t2`` key keeps its
        prompt from being any measured request's cached prefix)."""
        n = len(self.adapter_names)
        return [Cell(n, True, 1, n), Cell(0, True, 1, 1),
                Cell(0, False, 1, 1, max_tokens=2, long_prompt=True)]  # fmt: skip

    def messages(self, text: str) -> list[dict[str, str]]:
        system = {"role": "system", "content": self.system_prompt}
        return [system, {"role": "user", "content": text}]

    def chat_body(self, cell: Cell, i: int) -> dict[str, Any]:
        """The OpenAI chat request both HTTP servers get, streamed so TTFT is visible."""
        adapter, text, constrained = self.request(cell, i)
        body: dict[str, Any] = {
            "model": adapter or BASE_MODEL,
            "messages": self.messages(text),
            "max_tokens": cell.max_tokens or self.max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if cell.fixed:
            body["min_tokens"] = body["max_tokens"]  # vLLM's extension; the gateway's too
        if constrained:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": SCHEMA_NAME, "schema": self.schema, "strict": True},
            }
        return body

    def arrivals(self, cell: Cell) -> list[float]:
        """Open-loop send offsets (seconds): a seeded Poisson process at ``cell.rate``."""
        assert cell.rate
        rng = random.Random(f"{self.seed}-{cell.key}")
        t, out = 0.0, []
        for _ in range(cell.requests):
            out.append(t)
            t += rng.expovariate(cell.rate)
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Workload:
        data = json.loads(text)
        data["prompts"] = tuple(data["prompts"])
        data["adapter_names"] = tuple(data["adapter_names"])
        data["long_prompts"] = tuple(data["long_prompts"])
        return cls(**data)


def build_workload(
    num_adapters: int, max_tokens: int, num_prompts: int = 64, seed: int = 0
) -> Workload:
    manifest = json.loads((SOURCE_ADAPTER / "manifest.json").read_text())
    labels = tuple(manifest["labels"])
    return Workload(
        prompts=banking77_texts(num_prompts),
        adapter_names=tuple(f"tenant{i}" for i in range(num_adapters)),
        system_prompt=manifest["system_prompt"],
        schema=intent_model(labels).model_json_schema(),
        max_tokens=max_tokens,
        seed=seed,
        long_prompts=long_passages(LONG_PROMPTS, LONG_PROMPT_CHARS),
    )


def long_passages(count: int, min_chars: int) -> tuple[str, ...]:
    """``count`` passages of real customer messages (BANKING77's test split, spread over
    its labels), one message a line, each at least ``min_chars`` long."""
    rows = banking77_texts(count * min_chars // 30)  # messages average ~55 characters
    passages: list[str] = []
    lines: list[str] = []
    for row in rows:
        lines.append(row)
        if sum(len(line) + 1 for line in lines) > min_chars:
            passages.append("\n".join(lines))
            lines = []
        if len(passages) == count:
            return tuple(passages)
    raise ValueError(f"BANKING77 has too little text for {count} passages of {min_chars} chars")


def cell_matrix(
    adapter_counts: list[int],
    concurrencies: list[int],
    rates: list[float],
    waves: int,
    min_requests: int,
) -> list[Cell]:
    """Closed-loop cells for every (schema, adapters, concurrency), then one prefill cell
    per adapter count, then open-loop cells at the largest adapter mix with a schema.
    ``waves`` full batches per closed cell; adapter count 0 is the base model.

    The first cell asks for one token without a schema: its latency is nearly all
    serving overhead (HTTP, auth, tokenising, one engine step), which is where a few
    added milliseconds can be seen at all next to a second of decoding. A prefill cell
    asks for one token after a long prompt at concurrency 1: its time to first token is
    the prompt's prefill, where a LoRA path that works per token costs the most.
    """
    cells = [Cell(1, False, 1, max(min_requests, 24), max_tokens=1)]
    cells += [
        Cell(n, schema, c, max(min_requests, waves * c))
        for schema in (True, False)
        for n in adapter_counts
        for c in concurrencies
    ]
    cells += [
        Cell(n, False, c, max(min_requests, waves * c), fixed=True)
        for n in adapter_counts
        for c in concurrencies
    ]
    prefill = max(min_requests, PREFILL_REQUESTS)
    cells += [Cell(n, False, 1, prefill, max_tokens=1, long_prompt=True) for n in adapter_counts]
    top = max(adapter_counts)
    cells += [Cell(top, True, 0, max(min_requests, round(rate * 12)), rate=rate) for rate in rates]
    return cells
