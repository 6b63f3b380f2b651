"""``gateway-tools bench training``: what a fine-tuning job costs the tenants being served.

One gateway per worker policy (``--workers``): ``yield``, the default (paused while
requests are in flight, nice 19 and SCHED_IDLE otherwise); ``idle`` (nice 19 and
SCHED_IDLE, never paused); ``nice`` (nice 19 alone).
Each runs three phases of ``/v1/classify`` at ``--concurrency`` (4) on the default
adapter: serving alone; serving while a fine-tuning job (created over the API, as a
tenant would) is in its training steps; serving alone again after the job is cancelled,
so drift over the run shows apart from the job's cost. Between the last two, the job
trains ``--job-alone-s`` with no request, for its speed unhindered. The report gives p50/p95 and
requests/s per phase, their ratio to the first phase on the same gateway, and the
training steps and tokens/s the job made during its phase. Writes ``results.json`` and
``report.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import secrets
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.config import REPO_ROOT
from gateway.tenancy import hash_key
from gateway_tools.bench.data import BANKING77, banking77_texts
from gateway_tools.bench.neighbours import send_classify, summarise
from gateway_tools.bench.perf.loadgen import Record, closed_loop
from gateway_tools.bench.stats import DEFINITION, rounded
from gateway_tools.bench.tables import cell
from gateway_tools.launch import launch

LABELS = ("card_arrival", "exchange_rate", "lost_or_stolen_card", "top_up_failed")
PHASES = ("alone", "training", "alone_after")
WORKERS = {  # name -> (nice, SCHED_IDLE, paused while serving)
    "yield": (19, True, True),
    "idle": (19, True, False),
    "nice": (19, False, False),
}
JOB_START_LIMIT_S = 600  # data checks and the model load, before the first step


def training_rows(per_label: int, skip: int = 0) -> list[dict[str, str]]:
    """``per_label`` rows of each of ``LABELS`` from BANKING77's training split."""
    taken: dict[str, list[dict[str, str]]] = {label: [] for label in LABELS}
    with (BANKING77 / "train.csv").open(newline="", encoding="utf-8") as source:
        for row in csv.DictReader(source):
            rows = taken.get(row["category"])
            if rows is not None and len(rows) < per_label + skip:
                rows.append({"text": row["text"], "label": row["category"]})
    return [row for rows in taken.values() for row in rows[skip:]]


def tenants_file(serving_key: str, trainer_key: str) -> dict[str, Any]:
    """``serving`` classifies on every adapter; ``trainer`` owns the adapter it trains."""
    return {"tenants": [
        {"name": "serving", "key_hashes": [hash_key(serving_key)], "allowed_adapters": ["*"]},
        {"name": "trainer", "key_hashes": [hash_key(trainer_key)],
         "allowed_adapters": ["trainer-intents"], "default_adapter": "trainer-intents"},
    ]}  # fmt: skip


class Job:
    """The trainer tenant's job, over the HTTP API as the SDK would send it."""

    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=120,
                                   headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        self.id = ""

    def upload(self, name: str, rows: Sequence[dict[str, str]]) -> str:
        content = "".join(json.dumps(row) + "\n" for row in rows).encode()
        res = self.client.post("/v1/files", data={"purpose": "fine-tune"},
                               files={"file": (name, content, "application/jsonl")})  # fmt: skip
        res.raise_for_status()
        return str(res.json()["id"])

    def create(self, epochs: int) -> None:
        body = {"model": "base", "suffix": "load", "seed": 0,
                "training_file": self.upload("train.jsonl", training_rows(40)),
                "validation_file": self.upload("val.jsonl", training_rows(5, skip=40)),
                "hyperparameters": {"n_epochs": epochs, "batch_size": 8},
                "gateway": {"labels": list(LABELS)}}  # fmt: skip
        res = self.client.post("/v1/fine_tuning/jobs", json=body)
        res.raise_for_status()
        self.id = str(res.json()["id"])

    def steps(self) -> list[dict[str, Any]]:
        """The job's training-step events' data, oldest first."""
        res = self.client.get(f"/v1/fine_tuning/jobs/{self.id}/events", params={"limit": 1000})
        res.raise_for_status()
        return [e["data"] for e in reversed(res.json()["data"]) if e.get("type") == "metrics"]

    def status(self) -> str:
        return str(self.client.get(f"/v1/fine_tuning/jobs/{self.id}").json()["status"])

    def wait_for_steps(self) -> None:
        """Until the job is in its training steps (past data checks and model load)."""
        deadline = time.monotonic() + JOB_START_LIMIT_S
        while not self.steps():
            status = self.status()
            if status in ("failed", "cancelled", "succeeded"):
                raise RuntimeError(f"the job ended ({status}) before the phase could start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no training step in {JOB_START_LIMIT_S} s")
            time.sleep(2)

    def cancel(self) -> str:
        res = self.client.post(f"/v1/fine_tuning/jobs/{self.id}/cancel")
        return str(res.json().get("status", res.status_code))


async def serve_phase(url: str, key: str, texts: Sequence[str], requests: int,
                      concurrency: int) -> tuple[list[Record], float]:  # fmt: skip
    """``requests`` classify requests, ``concurrency`` at a time; and the wall seconds."""
    async with httpx.AsyncClient(timeout=600, headers={"Authorization": f"Bearer {key}"}) as c:

        async def classify(i: int) -> Record:
            return await send_classify(c, url + "/v1/classify", {"text": texts[i % len(texts)]})

        started = time.perf_counter()
        records = await closed_loop(classify, requests, concurrency, lambda: None)
        return records, time.perf_counter() - started


def training_during(before: list[dict[str, Any]], after: list[dict[str, Any]],
                    seconds: float) -> dict[str, Any]:  # fmt: skip
    """Steps the job made while serving was measured, and its tokens/s over them."""
    new = after[len(before) :]
    tokens = [d.get("tokens_per_second") or 0.0 for d in new]
    return {
        "steps": len(new),
        "steps_per_minute": rounded(60 * len(new) / seconds, 1) if seconds else None,
        "tokens_per_second": rounded(sum(tokens) / len(tokens), 1) if tokens else None,
    }


def with_ratios(phases: list[dict[str, Any]]) -> None:
    """Each phase's p50, p95 and requests/s over the first phase's on the same gateway."""
    base = phases[0]["serving"]
    for phase in phases:
        s = phase["serving"]
        phase["ratio"] = {
            q: rounded(s[q] / base[q], 2) if s[q] and base[q] else None
            for q in ("p50_ms", "p95_ms", "requests_per_s")
        }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Serving while a fine-tuning job trains", "",
        f"`/v1/classify` on the default adapter, {result['requests']} requests per phase, "
        f"{result['concurrency']} at a time. The job: {len(LABELS)} labels x 40 rows, batch 8, "
        f"one worker with {result['worker_threads']} torch thread(s), cancelled after its "
        "phase. Ratios are to serving alone on the same gateway.", "",
        "| worker | phase | ok | p50 ms | p95 ms | req/s | p50 ratio | p95 ratio | "
        "req/s ratio | job steps (per min) | job tokens/s | job alone after: steps (per min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for run in result["runs"]:
        for p in run["phases"]:
            s, r, t, a = p["serving"], p["ratio"], p.get("training"), p.get("job_alone")
            alone = f"{a['steps']} ({cell(a['steps_per_minute'], '{:.1f}')})" if a else "-"
            job = (f"{t['steps']} ({cell(t['steps_per_minute'], '{:.1f}')}) | "
                   f"{cell(t['tokens_per_second'], '{:.0f}')}") if t else "- | -"  # fmt: skip
            lines.append(
                f"| {run['worker']} | {p['phase']} | {s['ok']}/{s['requests']} | "
                f"{cell(s['p50_ms'], '{:.0f}')} | {cell(s['p95_ms'], '{:.0f}')} | "
                f"{cell(s['requests_per_s'], '{:.2f}')} | {cell(r['p50_ms'], '{:.2f}x')} | "
                f"{cell(r['p95_ms'], '{:.2f}x')} | {cell(r['requests_per_s'], '{:.2f}x')} | "
                f"{job} | {alone} |"
            )
    return "\n".join([*lines, "", DEFINITION, "",
                      f"Generated by `{result['command']}`.", ""])  # fmt: skip


def run_gateway(worker: str, args: argparse.Namespace, texts: Sequence[str]) -> dict[str, Any]:
    nice, sched_idle, pause = WORKERS[worker]
    keys = {"serving": secrets.token_urlsafe(24), "trainer": secrets.token_urlsafe(24)}
    phases: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tenants = Path(tmp) / "tenants.yaml"
        tenants.write_text(yaml.safe_dump(tenants_file(keys["serving"], keys["trainer"])))
        env = {"GATEWAY_AUTH_MODE": "tenants", "GATEWAY_TENANTS_FILE": str(tenants),
               "GATEWAY_ADMIN_KEY": secrets.token_urlsafe(24),
               "GATEWAY_FINETUNE_DIR": str(Path(tmp) / "finetune"),
               "GATEWAY_FINETUNE_WORKER_NICE": str(nice),
               "GATEWAY_FINETUNE_WORKER_SCHED_IDLE": str(sched_idle).lower(),
               "GATEWAY_FINETUNE_YIELD_TO_SERVING": str(pause).lower(),
               "GATEWAY_FINETUNE_WORKER_THREADS": str(args.worker_threads)}  # fmt: skip
        with launch(Path(tmp) / "gw.log", env=env) as gw:  # the repository's adapter store
            job = Job(gw.url, keys["trainer"])
            for name in PHASES:
                training = name == "training"
                if training:
                    job.create(args.epochs)
                    job.wait_for_steps()
                    before = job.steps()
                records, seconds = asyncio.run(
                    serve_phase(gw.url, keys["serving"], texts, args.requests, args.concurrency)
                )
                serving = summarise(records)
                serving["requests_per_s"] = rounded(serving["ok"] / seconds, 2)
                phase: dict[str, Any] = {"phase": name, "seconds": rounded(seconds, 1),
                                         "serving": serving}  # fmt: skip
                if training:
                    during = job.steps()
                    phase["training"] = training_during(before, during, seconds)
                    time.sleep(args.job_alone_s)  # the job alone, no request in flight
                    phase["job_alone"] = training_during(during, job.steps(), args.job_alone_s)
                    phase["job_status_after"] = job.status()
                    phase["cancel"] = job.cancel()
                phases.append(phase)
                print(json.dumps({"worker": worker, **phase}), flush=True)
    with_ratios(phases)
    return {"worker": worker, "nice": nice, "sched_idle": sched_idle, "paused_while_serving": pause,
            "phases": phases}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", nargs="+", choices=list(WORKERS), default=list(WORKERS),
                        help="worker priorities, one gateway each: idle = nice 19 + "
                        "SCHED_IDLE, nice = nice 19 alone")  # fmt: skip
    parser.add_argument("--requests", type=int, default=400, help="classify requests per phase")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--worker-threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=50, help="enough to outlast the phase")
    parser.add_argument(
        "--job-alone-s",
        type=float,
        default=30.0,
        help="the job alone after its phase, for its speed unhindered",
    )
    parser.add_argument("--append", action="store_true",
                        help="add these gateways' runs to --out's results.json")  # fmt: skip
    parser.add_argument("--out", default=str(REPO_ROOT / "bench-results" / "training"))


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    texts = banking77_texts(args.requests)
    result: dict[str, Any] = {
        "command": "gateway-tools bench training " + " ".join(
            [f"--workers {' '.join(args.workers)}", f"--requests {args.requests}",
             f"--concurrency {args.concurrency}", f"--worker-threads {args.worker_threads}",
             f"--out {args.out}"]),
        "requests": args.requests, "concurrency": args.concurrency,
        "worker_threads": args.worker_threads, "runs": [],
    }  # fmt: skip
    saved = out / "results.json"
    if args.append and saved.is_file():  # an earlier invocation's runs, its command kept
        earlier = json.loads(saved.read_text(encoding="utf-8"))
        result["runs"] = earlier["runs"]
        result["command"] = f"{earlier['command']}; then {result['command']} --append"
    for worker in args.workers:
        result["runs"].append(run_gateway(worker, args, texts))
        (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "report.md").write_text(markdown(result))
    print(markdown(result))
    return 0
