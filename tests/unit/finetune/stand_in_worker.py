"""TEST DOUBLE for ``gateway.finetune.worker``: ``python -m tests.unit.finetune.stand_in_worker
<job-dir>`` speaks the worker's event protocol without torch, in milliseconds.

What it does is chosen by the job's version name, which carries the job's ``suffix``
(``ft-<suffix>-<hex>``):

- ``ok`` / ``good``: one step, one checkpoint, publish a (tiny, valid) version into the
  store, then ``result`` with validation accuracy 0.5 / 0.9;
- ``checks``: ``failure`` with a data-check findings table, exit 2;
- ``crash``: exit 3 without a word;
- ``hang``: leave a staging folder in the store, report a step, then wait to be stopped;
- ``stubborn``: like ``hang`` but ignores SIGTERM (only SIGKILL stops it);
- ``greedy``: report a step of 10**9 tokens, then wait to be stopped.

Every run first reports its niceness and whether it runs under ``SCHED_IDLE`` (set by
the runner while this process was still importing), so tests can check its priority.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from gateway.finetune.worker import EventLog
from tests.adapter_factory import make_peft_folder

FINDINGS = [
    {"check": "completions match schema", "status": "ok", "detail": "6 valid"},
    {"check": "exact duplicates", "status": "FAIL", "detail": "1 texts with conflicting labels"},
]


def main(job_dir: Path) -> int:
    spec = json.loads((job_dir / "spec.json").read_text())
    train = spec["train"]
    mode = train["version"].split("-")[1]
    log = EventLog(job_dir / "events.jsonl")
    idle = os.sched_getscheduler(0) == os.SCHED_IDLE
    log.write("message", message=f"niceness {os.nice(0)} threads {spec['threads']} idle {idle}")
    store = Path(train["out_root"]) / train["name"]
    if mode in ("ok", "good"):
        log.write("metrics", step=1, epoch=1, train_loss=0.7, tokens=120, tokens_per_second=60.0)
        metrics = {
            "step": 1,
            "train_loss": 0.7,
            "valid_loss": 0.6,
            "valid_mean_token_accuracy": 0.5,
        }
        log.write("checkpoint", epoch=1, metrics=metrics)
        make_peft_folder(store / train["version"], labels=["billing", "other"])
        accuracy = 0.9 if mode == "good" else 0.5
        evaluation = {"valid_loss": 0.6, "valid_accuracy": accuracy, "calibration": None}
        log.write("result", name=train["name"], version=train["version"], trained_tokens=120,
                  hyperparameters={"n_epochs": 1}, evaluation=evaluation)  # fmt: skip
        return 0
    if mode == "checks":
        log.write("failure", code="data_check_failed", message="data checks failed",
                  findings=FINDINGS)  # fmt: skip
        return 2
    if mode == "crash":
        return 3
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    (store / f".staging-{train['version']}-x").mkdir(parents=True)
    tokens = 10**9 if mode == "greedy" else 10
    log.write("metrics", step=1, epoch=1, train_loss=0.7, tokens=tokens, tokens_per_second=5.0)
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
