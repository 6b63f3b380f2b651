"""One fine-tuning job, in its own process: ``python -m gateway.finetune.worker <job-dir>``.

It reads ``<job-dir>/spec.json`` (the training options, the base model, the store's
limits, the thread count) and runs the training recipe as ``gateway train`` does: the
data checks first (a failure ends the job before any training step, with the findings),
then training, then publishing into the adapter store through the store's publisher.
What happens is appended to ``<job-dir>/events.jsonl``, one JSON object a line, which the
gateway's runner tails: ``message``, ``metrics`` (each step), ``checkpoint`` (each epoch,
its LoRA weights saved under ``<job-dir>/checkpoints/``), then ``result`` or ``failure``.

SIGTERM (cancel) raises ``SystemExit``, so the recipe's staging folder is removed on the
way out and nothing half-written stays in the store.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from gateway import errors
from gateway.common.usage import UsageError
from gateway.models import ModelInfo
from gateway.registry.store import StoreLimits
from gateway.training.config import TrainConfig
from gateway.training.recipe import DataCheckFailed, train

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_ENV = "GATEWAY_FINETUNE_PARENT"  # the pid of the gateway that started the worker
KEEP_CHECKPOINTS = 3  # the last epochs' weights on disk; every epoch's metrics are kept


class EventLog:
    """Appends one JSON object a line, flushed at once (the runner reads as it goes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, kind: str, **values: Any) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"type": kind, **values}) + "\n")


class JobProgress:
    """The recipe's progress hooks as job events and checkpoints."""

    def __init__(self, log: EventLog, checkpoints: Path) -> None:
        self.log = log
        self.checkpoints = checkpoints
        self.best: dict[str, Any] = {}  # the epoch whose weights the recipe keeps

    def checks(self, rows: list[dict[str, str]]) -> None:
        warned = [row["check"] for row in rows if row["status"] != "ok"]
        message = "data checks passed" + (f" with warnings: {', '.join(warned)}" if warned else "")
        self.log.write("message", message=message, level="warn" if warned else "info",
                       data={"checks": rows})  # fmt: skip

    def step(self, values: dict[str, Any]) -> None:
        speed = values["tokens"] / values["seconds"] if values["seconds"] > 0 else None
        self.log.write("metrics", step=values["step"], epoch=values["epoch"],
                       train_loss=values["train_loss"], tokens=values["tokens"],
                       tokens_per_second=speed)  # fmt: skip

    def epoch(self, values: dict[str, Any], model: Any) -> None:
        folder = self.checkpoints / f"step-{values['step']}"
        model.save_pretrained(folder, safe_serialization=True)
        for old in sorted(self.checkpoints.iterdir(), key=_step)[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old)
        metrics = {"step": values["step"], "train_loss": values["train_loss"],
                   "valid_loss": values["val_loss"],
                   "valid_mean_token_accuracy": values["val_accuracy"]}  # fmt: skip
        self.log.write("checkpoint", epoch=values["epoch"], metrics=metrics)
        loss = values["val_loss"]  # None without validation data: the last epoch is kept
        if loss is None or not self.best or loss < self.best["valid_loss"]:
            self.best = metrics


def _step(folder: Path) -> int:
    return int(folder.name.removeprefix("step-"))


def evaluation(manifest: dict[str, Any], best: dict[str, Any]) -> dict[str, Any]:
    """The kept epoch on the validation data, with the calibration the recipe fitted."""
    return {
        "valid_loss": best.get("valid_loss"),
        "valid_accuracy": best.get("valid_mean_token_accuracy"),
        "calibration": manifest.get("calibration"),
        "escalation": manifest.get("escalation"),
        "epochs_run": manifest["training"].get("epochs_run"),
    }


def run(job_dir: Path, log: EventLog) -> int:
    spec = json.loads((job_dir / "spec.json").read_text(encoding="utf-8"))
    cfg = TrainConfig(**spec["train"])
    base = ModelInfo(**{**spec["base"], "path": Path(spec["base"]["path"])})
    raw = spec["limits"]
    limits = StoreLimits(
        raw["base_fingerprint"], raw["max_rank"], frozenset(raw["target_modules"]), raw["max_bytes"]
    )
    progress = JobProgress(log, job_dir / "checkpoints")
    progress.checkpoints.mkdir(exist_ok=True)
    log.write("message", message="worker started: data checks, then training")
    try:
        threads = spec["threads"]
        # CPU time per thread: time paused for serving (SIGSTOP) or waiting for a core
        # does not count against the job's training budget.
        path = train(cfg, base, limits, progress=progress, threads=threads,
                     clock=lambda: time.process_time() / threads)  # fmt: skip
    except DataCheckFailed as exc:
        findings = exc.report.as_dict() if exc.report else None
        log.write("failure", code="data_check_failed", message=_public(str(exc), cfg),
                  findings=findings)  # fmt: skip
        return 2
    except UsageError as exc:  # a row the readers refuse, labels outside the set
        log.write("failure", code="invalid_training_data", message=_public(str(exc), cfg))
        return 2
    except errors.GatewayError as exc:  # the store refused the version
        log.write("failure", code=exc.code, message=exc.message)
        return 2
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    log.write("result", name=cfg.name, version=cfg.version,
              trained_tokens=manifest["training"]["tokens"],
              hyperparameters={"n_epochs": manifest["training"]["epochs"],
                               "batch_size": manifest["training"]["batch_size"]},
              evaluation=evaluation(manifest, progress.best))  # fmt: skip
    return 0


def _public(message: str, cfg: TrainConfig) -> str:
    """Reader messages name the job folder's copies; a tenant knows them by role."""
    message = message.replace(str(cfg.data), "training_file")
    return message.replace(str(cfg.validation), "validation_file") if cfg.validation else message


def _stop(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def die_with_parent() -> None:
    """SIGKILL this worker when the gateway that started it dies, however it dies. A
    gateway that crashed leaves no worker training on (or stopped by ``serving_first``
    forever); the next start fails the job and removes what it left in the store.

    The gateway names itself in ``PARENT_ENV``: this runs after the training imports
    (seconds), and a gateway killed meanwhile has already left this worker to PID 1,
    which ``os.getppid()`` alone cannot tell from a live parent."""
    named = os.environ.get(PARENT_ENV, "")
    parent = int(named) if named.isdigit() else os.getppid()
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    die_with_parent()
    signal.signal(signal.SIGTERM, _stop)
    job_dir = Path(argv[0])
    return run(job_dir, EventLog(job_dir / "events.jsonl"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
