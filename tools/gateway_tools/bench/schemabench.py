"""``gateway-tools bench schemas``: real-world JSON Schemas (JSONSchemaBench) through the gateway.

Each schema gets a neutral prompt and a token budget; its outcome is one of

- ``served``: HTTP 200 and the answer validates against the schema (checked here again,
  client-side, with ``jsonschema``);
- ``rejected``: a 4xx naming why (``schema_unsupported``, ``schema_invalid``, ...);
- ``failed``: a typed 502 (``output_truncated``, ``output_invalid``) or another error;
- ``bug``: HTTP 200 with an answer that fails the schema. There must be none.

The gateway is started once per structured-output backend, so coverage can be compared.
Writes ``results.json`` (every schema's outcome) and ``report.md``; ``--report-only DIR``
rewrites ``DIR/report.md`` from the ``results*.json`` saved there, without a gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from tqdm import tqdm

from gateway.config import REPO_ROOT
from gateway_tools.bench.data import JSONSCHEMABENCH, shown
from gateway_tools.launch import launch

SUBSETS = ("Github_trivial", "Github_easy", "Glaiveai2K")
# Schemas per subset whose files the repository ships: the integration test's sample and
# the two documented runs (docs/benchmarks/schemas, docs/benchmarks/schemas-240).
SAMPLE_SIZES = (4, 30, 80)
BACKENDS = ("xgrammar", "guidance", "outlines", "auto")
PROMPT = "Produce an example JSON object for this schema."
OUTCOMES = ("served", "rejected", "failed", "bug")


def load(subset: str, size: int, data: Path = JSONSCHEMABENCH) -> list[tuple[str, Any]]:
    """Every n-th name of the subset's upstream file listing (sorted, kept in
    ``index.json``), so a sample is the same fixed spread whichever files are shipped."""
    names = json.loads((data / "index.json").read_text(encoding="utf-8"))[subset]
    picked = names[:: max(1, len(names) // size)][:size]
    return [(name, json.loads((data / subset / name).read_text(encoding="utf-8")))
            for name in picked]  # fmt: skip


def classify(status: int, body: Any, schema: Any) -> tuple[str, str, str]:
    """(outcome, code, detail) for one response."""
    if status == 200:
        content = body["choices"][0]["message"]["content"]
        try:
            value = json.loads(content)
            cls = jsonschema.validators.validator_for(
                schema, default=jsonschema.Draft202012Validator
            )
            checker = cls(schema, format_checker=cls.FORMAT_CHECKER)  # formats too
            error = jsonschema.exceptions.best_match(checker.iter_errors(value))
        except json.JSONDecodeError as exc:
            return "bug", "not_json", str(exc)[:200]
        if error is not None:
            return "bug", "schema_mismatch", error.message[:200]
        return "served", "", ""
    error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
    code = str(error.get("code") or status)
    detail = str(error.get("message") or "")[:300]
    if 400 <= status < 500:
        return "rejected", code, detail
    return "failed", code, detail


async def run_schemas(
    url: str, items: list[tuple[str, str, Any]], concurrency: int, max_tokens: int, label: str
) -> list[dict[str, Any]]:
    return await run_schemas_with_headers(url, items, concurrency, max_tokens, {}, label)


async def run_schemas_with_headers(
    url: str,
    items: list[tuple[str, str, Any]],
    concurrency: int,
    max_tokens: int,
    headers: dict[str, str],
    label: str = "schemas",
) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(items), desc=label, unit="schema", leave=False)

    async def one(client: httpx.AsyncClient, subset: str, name: str, schema: Any) -> dict:
        body = {
            "model": "base",
            "messages": [{"role": "user", "content": f"{PROMPT}\n{json.dumps(schema)[:4000]}"}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "bench", "schema": schema, "strict": True},
            },
        }
        async with gate:
            started = time.perf_counter()
            try:
                res = await client.post(url + "/v1/chat/completions", json=body)
                try:
                    payload = res.json()
                except ValueError:
                    payload = None
                outcome, code, detail = classify(res.status_code, payload, schema)
                status = res.status_code
            except httpx.HTTPError as exc:
                outcome, code, detail, status = "failed", type(exc).__name__, str(exc)[:200], 0
        bar.update()
        return {"subset": subset, "file": name, "status": status, "outcome": outcome,
                "code": code, "detail": detail,
                "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip

    async with httpx.AsyncClient(timeout=600, headers=headers) as client:
        rows = await asyncio.gather(*(one(client, *item) for item in items))
    bar.close()
    return list(rows)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per subset: counts and rates of each outcome, and the commonest codes."""
    by_subset: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_subset[row["subset"]].append(row)
    by_subset["all"] = rows
    out = {}
    for subset, group in by_subset.items():
        counts = Counter(r["outcome"] for r in group)
        out[subset] = {
            "schemas": len(group),
            **{o: counts.get(o, 0) for o in OUTCOMES},
            "served_rate": round(counts.get("served", 0) / len(group), 4),
            "codes": dict(
                Counter(
                    f"{r['outcome']}:{r['code']}" for r in group if r["outcome"] != "served"
                ).most_common(8)
            ),
        }
    return out


def markdown(results: list[dict[str, Any]], folder: Path) -> str:
    """The report of one or more saved runs of the same sample (one backend per file is
    fine): counts recomputed from the saved rows, so the table cannot drift from them."""
    first = results[0]
    for other in results[1:]:
        if (other["per_subset"], other["max_tokens"]) != (first["per_subset"], first["max_tokens"]):
            raise ValueError("these results are runs of different samples or token budgets")
    runs = [(backend, rows) for r in results for backend, rows in r["rows"].items()]
    runs.sort(key=lambda run: BACKENDS.index(run[0]))  # the default backend first
    summary = {backend: summarise(rows) for backend, rows in runs}
    lines = ["# JSONSchemaBench through the gateway", "",
             f"Schemas: {first['per_subset']} per subset (every n-th name of each subset's "
             f"upstream listing) from `{shown(JSONSCHEMABENCH)}` (JSONSchemaBench, MIT, see "
             "`data/README.md`); "
             f"prompt \"{PROMPT}\" with the schema, {first['max_tokens']} tokens, temperature 0."
             " One gateway per backend.", "",
             "| backend | subset | schemas | served (valid) | rejected | failed | bugs |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for backend, subsets in summary.items():
        for subset, s in subsets.items():
            lines.append(
                f"| {backend} | {subset} | {s['schemas']} | {s['served']} ({s['served_rate']:.1%})"
                f" | {s['rejected']} | {s['failed']} | {s['bug']} |"
            )
    lines += ["", "Commonest non-served outcomes (outcome:code → count):", ""]
    for backend, subsets in summary.items():
        lines.append(f"- {backend}: {json.dumps(subsets['all']['codes'])}")
    lines += ["", "Generated from the saved results by "
              f"`gateway-tools bench schemas --report-only {shown(folder)}`."]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_report(folder: Path) -> Path:
    """``folder/report.md`` from every ``results*.json`` saved in ``folder``."""
    files = sorted(folder.glob("results*.json"))
    if not files:
        raise FileNotFoundError(f"no results*.json in {folder}")
    report = folder / "report.md"
    results = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    report.write_text(markdown(results, folder))
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--subsets", nargs="+", choices=SUBSETS, default=list(SUBSETS))
    parser.add_argument("--per-subset", type=int, choices=SAMPLE_SIZES, default=30,
                        help="schemas per subset (the repository ships these samples)")  # fmt: skip
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", default=str(REPO_ROOT / "bench-results" / "schemas"))
    parser.add_argument(
        "--report-only",
        metavar="DIR",
        type=Path,
        help="rewrite DIR/report.md from the results*.json saved there; run nothing",
    )


def main(args: argparse.Namespace) -> int:
    if args.report_only:
        print(f"wrote {write_report(args.report_only)}")
        return 0
    items = [(sub, name, schema) for sub in args.subsets
             for name, schema in load(sub, args.per_subset)]  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"command": "gateway-tools bench schemas",
                              "per_subset": args.per_subset, "max_tokens": args.max_tokens,
                              "rows": {}, "summary": {}}  # fmt: skip
    for backend in args.backends:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GATEWAY_STRUCTURED_BACKEND": backend, "GATEWAY_OUTPUT_RETRIES": "1"}
            with launch(Path(tmp) / "gw.log", adapters={}, store=Path(tmp), env=env) as gw:
                rows = asyncio.run(run_schemas(gw.url, items, args.concurrency,
                                               args.max_tokens, backend))  # fmt: skip
        result["rows"][backend] = rows
        result["summary"][backend] = summarise(rows)
        (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "report.md").write_text(markdown([result], out))
    print(json.dumps(result["summary"], indent=2))
    bugs = sum(s["all"]["bug"] for s in result["summary"].values())
    return 1 if bugs else 0
