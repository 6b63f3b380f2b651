"""``gateway-tools bench runtime``: which CPU runtime setting serves fastest here.

Starts ``gateway serve`` once per setting and round (settings alternate, so drift
hits all alike), with ``GATEWAY_CPU_PRELOAD`` / ``GATEWAY_CPU_THREADS_BIND`` set the
way an operator would, and runs a few cells of the perf workload against each. The
best setting becomes ``cpu_runtime.AUTO_PRELOAD``; docs/benchmarks.md says what it found.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gateway.config import REPO_ROOT, Settings
from gateway_tools.bench.perf.sides import TENANT_KEY, Bench, gateway_serve, prepare_store, run_http
from gateway_tools.bench.perf.stats import merge
from gateway_tools.bench.perf.workload import Cell, build_workload

SETTINGS = (  # (cpu_preload, cpu_threads_bind); "vllm" = vLLM's own binding
    ("none", "vllm"),
    ("tcmalloc", "vllm"),
    ("iomp", "vllm"),
    ("tcmalloc+iomp", "vllm"),
    ("tcmalloc+iomp", "all"),
    ("tcmalloc+iomp", "nobind"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(REPO_ROOT / "bench-results" / "runtime.json"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from gateway.engine.factory import engine_options

    workload = build_workload(8, args.max_tokens)
    cells = [
        Cell(1, False, 1, 16, max_tokens=1),
        Cell(1, True, 1, 8),
        Cell(8, True, 16, 32),
    ]
    raw: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    result: dict[str, Any] = {"command": "gateway-tools bench runtime", "settings": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=args.rounds * len(SETTINGS) * len(cells), desc="runtime", unit="cell")
    with tempfile.TemporaryDirectory(prefix="runtime-") as tmp:
        work = Path(tmp)
        prepare_store(work / "store", workload.adapter_names)
        options, _ = engine_options(Settings())
        for round_no in range(1, args.rounds + 1):
            for preload, bind in SETTINGS:
                name = f"preload={preload} bind={bind}"
                env = {"GATEWAY_CPU_PRELOAD": preload, "GATEWAY_CPU_THREADS_BIND": bind}
                bench = Bench(work, workload, work / "store", options, env)

                def progress(key: str, summary: dict[str, Any], name: str = name) -> None:
                    raw[name][key].append(summary)
                    bar.update()

                log = work / f"gw-{round_no}-{preload}-{bind}.log"
                with gateway_serve(bench, log, options.grouped_lora) as (url, pid):
                    headers = {"Authorization": f"Bearer {TENANT_KEY}"}
                    run_http(url, pid, bench, cells, name, progress, headers)
                    preloaded = _preloaded(pid)
                result["settings"][name] = {"env": env, "engine_core_ld_preload": preloaded}
                result["raw"] = raw
                out.write_text(json.dumps(result, indent=1) + "\n")
    bar.close()
    fields = ("requests_per_s", "output_tokens_per_s", "latency_p50_ms", "tpot_p50_ms", "errors")
    table = {}
    for name, by_cell in raw.items():
        pooled = {key: merge(runs) for key, runs in by_cell.items()}
        table[name] = {key: {k: p[k] for k in fields} for key, p in pooled.items()}
    base = table.get("preload=none bind=vllm", {})
    for row in table.values():
        for key, cell in row.items():
            ref = (base.get(key) or {}).get("requests_per_s")
            cell["rps_vs_none"] = round(cell["requests_per_s"] / ref, 3) if ref else None
    result["table"] = table
    result["best_at_c16"] = max(table, key=lambda n: table[n]["schema-a8-c16"]["requests_per_s"])
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _preloaded(pid: int) -> list[str]:
    """What the engine core (the gateway's child) really has mapped: proof the preload took."""
    import psutil

    found = set()
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            for m in proc.memory_maps():
                if "tcmalloc" in m.path or "iomp" in m.path or "gomp" in m.path:
                    found.add(Path(m.path).name)
        except psutil.Error:
            continue
    return sorted(found)


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    result = run(args)
    print(json.dumps({"table": result["table"], "best_at_c16": result["best_at_c16"],
                      "elapsed_s": round(time.perf_counter() - started, 1)}, indent=2))  # fmt: skip
    return 0
