"""The fixed workload every side runs: prompts, adapters, schema and the cell matrix.

Request ``i`` of a cell always gets the same prompt and adapter on every side, so the
sides differ only in what serves them.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from typing import Any

from gateway.bench.data import banking77_texts
from gateway.config import REPO_ROOT
from schemas import intent_model

SOURCE_ADAPTER = REPO_ROOT / "adapters" / "banking77" / "v2"
SCHEMA_NAME = "intent_classification"


@dataclass(frozen=True)
class Cell:
    """One measured configuration. ``rate`` set = open loop (Poisson arrivals)."""

    adapters: int
    schema: bool
    concurrency: int
    requests: int
    rate: float | None = None
    max_tokens: int | None = None  # None = the workload's

    @property
    def key(self) -> str:
        load = f"r{self.rate:g}" if self.rate else f"c{self.concurrency}"
        tokens = f"-t{self.max_tokens}" if self.max_tokens else ""
        return f"{'schema' if self.schema else 'free'}-a{self.adapters}-{load}{tokens}"

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

    def request(self, cell: Cell, i: int) -> tuple[str, str, bool]:
        """(adapter, user text, constrained) for request ``i`` of ``cell``."""
        adapter = self.adapter_names[i % cell.adapters]
        return adapter, self.prompts[i % len(self.prompts)], cell.schema

    def messages(self, text: str) -> list[dict[str, str]]:
        system = {"role": "system", "content": self.system_prompt}
        return [system, {"role": "user", "content": text}]

    def chat_body(self, cell: Cell, i: int) -> dict[str, Any]:
        """The OpenAI chat request both HTTP servers get, streamed so TTFT is visible."""
        adapter, text, constrained = self.request(cell, i)
        body: dict[str, Any] = {
            "model": adapter,
            "messages": self.messages(text),
            "max_tokens": cell.max_tokens or self.max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
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
    )


def cell_matrix(
    adapter_counts: list[int],
    concurrencies: list[int],
    rates: list[float],
    waves: int,
    min_requests: int,
) -> list[Cell]:
    """Closed-loop cells for every (schema, adapters, concurrency), then open-loop cells
    at the largest adapter mix with a schema. ``waves`` full batches per closed cell.

    The first cell asks for one token without a schema: its latency is nearly all
    serving overhead (HTTP, auth, tokenising, one engine step), which is where a few
    added milliseconds can be seen at all next to a second of decoding.
    """
    cells = [Cell(1, False, 1, max(min_requests, 24), max_tokens=1)]
    cells += [
        Cell(n, schema, c, max(min_requests, waves * c))
        for schema in (True, False)
        for n in adapter_counts
        for c in concurrencies
    ]
    top = max(adapter_counts)
    cells += [Cell(top, True, 0, max(min_requests, round(rate * 12)), rate=rate) for rate in rates]
    return cells
