"""Trunk figures: engine start time, /v1/classify latency, tokens/s at concurrency 1 and 8.

    python -m gateway_tools.bench.trunk [--out bench-results/trunk.json]

Starts the real gateway (with the demo adapter), measures over HTTP and prints JSON.
Prompts are every n-th message of BANKING77's test split (``data/banking77``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from gateway_tools.bench.data import banking77_texts
from gateway_tools.bench.stats import ms, percentile
from gateway_tools.launch import launch


async def classify_latency(url: str, texts: list[str], adapter: str | None) -> dict[str, Any]:
    seconds: list[float] = []
    async with httpx.AsyncClient(timeout=300) as client:
        for text in tqdm(texts, desc=f"classify {adapter or 'base'}", leave=False):
            body = {"text": text, **({"adapter": adapter} if adapter else {})}
            start = time.perf_counter()
            res = await client.post(url + "/v1/classify", json=body)
            seconds.append(time.perf_counter() - start)
            res.raise_for_status()
    return {
        "requests": len(seconds),
        "p50_ms": ms(percentile(seconds, 0.5)),
        "p95_ms": ms(percentile(seconds, 0.95)),
        "mean_ms": ms(statistics.fmean(seconds)),
    }


async def throughput(url: str, texts: list[str], concurrency: int, max_tokens: int) -> dict:
    """Closed loop: ``concurrency`` workers each send requests back to back."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in texts:
        queue.put_nowait(text)
    tokens = 0
    errors = 0
    bar = tqdm(total=len(texts), desc=f"concurrency {concurrency}", leave=False)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal tokens, errors
        while not queue.empty():
            text = queue.get_nowait()
            body = {
                "model": "base",
                "messages": [{"role": "user", "content": f"Reply to this customer: {text}"}],
                "max_tokens": max_tokens,
                "temperature": 0,
            }
            res = await client.post(url + "/v1/chat/completions", json=body)
            if res.status_code == 200:
                tokens += res.json()["usage"]["completion_tokens"]
            else:
                errors += 1
            bar.update()

    async with httpx.AsyncClient(timeout=600) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    bar.close()
    return {
        "concurrency": concurrency,
        "requests": len(texts),
        "errors": errors,
        "completion_tokens": tokens,
        "seconds": round(elapsed, 2),
        "output_tokens_per_s": round(tokens / elapsed, 1),
        "requests_per_s": round(len(texts) / elapsed, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results/trunk.json")
    parser.add_argument("--classify-requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    texts = list(banking77_texts(64))
    with (
        tempfile.TemporaryDirectory() as tmp,
        launch(Path(tmp) / "gw.log", adapters={"demo": "v1"}) as gw,
    ):
        engine_ready = re.search(r"engine ready in ([\d.]+) s", gw.log.read_text())
        result: dict[str, Any] = {
            "process_start_to_ready_s": round(gw.seconds_to_ready, 1),
            "engine_start_s": float(engine_ready.group(1)) if engine_ready else None,
        }
        n = args.classify_requests
        result["classify_base"] = asyncio.run(classify_latency(gw.url, texts[:n], None))
        result["classify_demo"] = asyncio.run(classify_latency(gw.url, texts[:n], "demo"))
        result["throughput"] = [
            asyncio.run(throughput(gw.url, texts[: 8 * c], c, args.max_tokens)) for c in (1, 8)
        ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
