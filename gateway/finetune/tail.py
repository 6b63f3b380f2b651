"""Reading a worker's ``events.jsonl`` as it grows, and recording what it says in the job
store: messages and per-step metrics as events, epochs as checkpoints. The job's ending
(``result`` or ``failure``) is kept for the runner to act on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.finetune.jobs import JobStore


@dataclass
class Tail:
    path: Path
    job_id: str
    model: str  # the fine_tuned_model name, which checkpoints are named after
    offset: int = 0
    tokens: int = 0
    tokens_per_second: float = 0.0
    ending: dict[str, Any] | None = None  # the worker's ``result`` or ``failure`` line
    _partial: bytes = field(default=b"", repr=False)

    def read(self, jobs: JobStore) -> None:
        """Record every complete line written since the last read."""
        if not self.path.exists():
            return
        with self.path.open("rb") as source:
            source.seek(self.offset)
            chunk = source.read()
        self.offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            if line.strip():
                self._record(jobs, json.loads(line))

    def _record(self, jobs: JobStore, line: dict[str, Any]) -> None:
        kind = line.pop("type")
        if kind == "message":
            jobs.add_event(self.job_id, line["message"], level=line.get("level", "info"),
                           data=line.get("data"))  # fmt: skip
        elif kind == "metrics":
            self.tokens = line["tokens"]
            self.tokens_per_second = line["tokens_per_second"] or 0.0
            jobs.count_tokens(self.job_id, self.tokens)
            jobs.add_event(self.job_id, f"Step {line['step']}: training loss="
                           f"{line['train_loss']:.4f}", kind="metrics", data=line)  # fmt: skip
        elif kind == "checkpoint":
            step = line["metrics"]["step"]
            jobs.add_checkpoint(self.job_id, step, line["metrics"], f"{self.model}:step-{step}")
            jobs.add_event(self.job_id, f"Checkpoint created at step {step} (epoch "
                           f"{line['epoch']})", data=line["metrics"])  # fmt: skip
        elif kind in ("result", "failure"):
            self.ending = {"type": kind, **line}
        else:
            raise ValueError(f"unknown worker event type {kind!r}")
