"""Summaries of one cell's records: throughput, latency and TTFT percentiles, errors.

Each summary keeps its raw samples, so rounds of the same cell (run in different
processes) pool into true percentiles rather than an average of percentiles.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from gateway_tools.bench.perf.loadgen import Record
from gateway_tools.bench.stats import ms, percentile


def summarise(records: list[Record], wall_s: float) -> dict[str, Any]:
    ok = [r for r in records if r.ok]
    samples = {
        "latency": [r.latency for r in ok],
        "ttft": [r.ttft for r in ok if r.ttft is not None],
        # Time per output token after the first: decode speed, apart from queueing.
        "tpot": [
            (r.latency - r.ttft) / (r.output_tokens - 1)
            for r in ok
            if r.ttft is not None and r.output_tokens > 1
        ],
    }
    return _block(
        requests=len(records),
        errors=Counter(r.error or "unknown" for r in records if not r.ok),
        wall_s=wall_s,
        tokens=sum(r.output_tokens for r in ok),
        prompt_tokens=sum(r.prompt_tokens for r in ok),
        samples=samples,
    )


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool rounds of one cell: summed work over summed time, percentiles over all samples."""
    errors: Counter[str] = Counter()
    samples: dict[str, list[float]] = {"latency": [], "ttft": [], "tpot": []}
    for run in runs:
        errors.update(run["error_codes"])
        for name, values in run["samples"].items():
            samples[name].extend(values)
    pooled = _block(
        requests=sum(r["requests"] for r in runs),
        errors=errors,
        wall_s=sum(r["wall_s"] for r in runs),
        tokens=sum(r["output_tokens"] for r in runs),
        prompt_tokens=sum(r["prompt_tokens"] for r in runs),
        samples=samples,
    )
    pooled["rounds"] = len(runs)
    for key in ("rss_mb", "rss_front_mb"):  # peak resident memory: whole tree, front end
        peaks = [r[key] for r in runs if r.get(key)]
        if peaks:
            pooled[key] = max(peaks)
    return pooled


def _block(
    requests: int,
    errors: Counter[str],
    wall_s: float,
    tokens: int,
    prompt_tokens: int,
    samples: dict[str, list[float]],
) -> dict[str, Any]:
    ok = requests - sum(errors.values())
    return {
        "requests": requests,
        "errors": sum(errors.values()),
        "error_codes": dict(errors),
        "wall_s": round(wall_s, 3),
        "requests_per_s": round(ok / wall_s, 4) if wall_s > 0 else None,
        "output_tokens_per_s": round(tokens / wall_s, 2) if wall_s > 0 else None,
        "output_tokens": tokens,
        "mean_output_tokens": round(tokens / ok, 2) if ok else None,
        "prompt_tokens": prompt_tokens,
        "mean_prompt_tokens": round(prompt_tokens / ok, 1) if ok else None,
        "latency_p50_ms": ms(percentile(samples["latency"], 0.5), 2),
        "latency_p95_ms": ms(percentile(samples["latency"], 0.95), 2),
        "latency_p99_ms": ms(percentile(samples["latency"], 0.99), 2),
        "ttft_p50_ms": ms(percentile(samples["ttft"], 0.5), 2),
        "ttft_p95_ms": ms(percentile(samples["ttft"], 0.95), 2),
        "tpot_p50_ms": ms(percentile(samples["tpot"], 0.5), 2),
        "samples": {k: [round(v, 6) for v in vs] for k, vs in samples.items()},
    }
