"""Hot-swap latency: register a new adapter version, promote it (loads it into the engine),
and get the first streamed token from it, on a real gateway started for the run.

python -m gateway_tools.bench.hotswap [--swaps 20]   -> JSON on stdout + bench-results/hotswap.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from gateway.config import REPO_ROOT
from gateway_tools.bench.stats import ms, percentile
from gateway_tools.launch import launch

SOURCE = REPO_ROOT / "adapters" / "demo" / "v1"
ADMIN_KEY = "bench-admin-key-0123456789abcdef"


def percentiles(values: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": ms(percentile(values, 0.5)),
        "p95_ms": ms(percentile(values, 0.95)),
        "mean_ms": ms(statistics.fmean(values)),
        "n": len(values),
    }


def first_token_seconds(http: httpx.Client, url: str, model: str) -> float:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 4,
        "temperature": 0,
        "stream": True,
    }
    started = time.perf_counter()
    with http.stream("POST", url + "/v1/chat/completions", json=body) as res:
        res.raise_for_status()
        for line in res.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                return time.perf_counter() - started
    raise RuntimeError("the stream ended without a token")


def swap_loop(
    admin: httpx.Client,
    chat: httpx.Client,
    url: str,
    store: Path,
    name: str,
    source: Path,
    num_swaps: int,
) -> dict[str, Any]:
    """Register, promote and call ``num_swaps`` new versions of ``name``; times each phase.

    ``admin`` carries the admin key, ``chat`` a key allowed to call ``name``.
    """
    phases: dict[str, list[float]] = {"register": [], "promote_load": [], "first_token": []}
    totals: list[float] = []
    first_token_seconds(chat, url, name)  # warm-up
    for i in tqdm(range(num_swaps), desc="hot-swaps", unit="swap", leave=False):
        version = f"hs{i}"
        target = store / name / version
        shutil.copytree(source, target)  # the "upload", not timed
        manifest = json.loads((target / "manifest.json").read_text())
        manifest.update(name=name, version=version)
        (target / "manifest.json").write_text(json.dumps(manifest))
        t0 = time.perf_counter()
        admin.post(url + "/admin/adapters", json={"path": f"{name}/{version}"}).raise_for_status()
        t1 = time.perf_counter()
        res = admin.post(url + f"/admin/adapters/{name}/promote", json={"version": version})
        res.raise_for_status()
        t2 = time.perf_counter()
        ttft = first_token_seconds(chat, url, name)
        phases["register"].append(t1 - t0)
        phases["promote_load"].append(t2 - t1)
        phases["first_token"].append(ttft)
        totals.append(t2 - t0 + ttft)
    return {
        "swaps": num_swaps,
        "register_load_first_token": percentiles(totals),
        **{phase: percentiles(values) for phase, values in phases.items()},
    }


def run(num_swaps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        shutil.copytree(SOURCE, store / "demo" / "v1")
        env = {"GATEWAY_ADMIN_KEY": ADMIN_KEY}
        with (
            launch(Path(tmp) / "gw.log", adapters={"demo": "v1"}, store=store, env=env) as gw,
            httpx.Client(timeout=120, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http,
        ):
            return swap_loop(http, http, gw.url, store, "demo", SOURCE, num_swaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=20)
    result = run(parser.parse_args().swaps)
    out = REPO_ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "hotswap.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
