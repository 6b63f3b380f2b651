"""The real worker on a two-layer Llama (``tiny_base``): checks, steps, checkpoints, the
published version and its evaluation, as events; a failed check trains nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.finetune.worker import KEEP_CHECKPOINTS, EventLog, run
from gateway.models import ModelInfo
from tests.processes import alive
from tests.unit.training.conftest import base, tiny_base  # noqa: F401 (fixtures)
from tests.unit.training.runs import ROWS


def run_job(tmp_path: Path, model: ModelInfo, rows: list[tuple[str, str]], **train: Any):
    folder = tmp_path / "job"
    folder.mkdir()
    data = folder / "train.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "intent": lab}) for t, lab in rows))
    options = {
        "name": "tiny", "version": "ft-1", "data": str(data), "labels": ["billing", "other"],
        "val_share": 0.34, "rank": 2, "alpha": 4, "epochs": 4, "batch_size": 2,
        "target_modules": ["q_proj", "v_proj"], "out_root": str(tmp_path / "store"),
        "evaluate": False, "bf16": False, "early_stopping_patience": 0, **train,
    }  # fmt: skip
    spec = {
        "train": options,
        "base": {"name": model.name, "path": str(model.path), "fingerprint": model.fingerprint,
                 "variant": model.variant},
        "limits": {"base_fingerprint": model.fingerprint, "max_rank": 16,
                   "target_modules": ["q_proj", "v_proj"], "max_bytes": 10**9},
        "threads": 1,
    }  # fmt: skip
    (folder / "spec.json").write_text(json.dumps(spec))
    code = run(folder, EventLog(folder / "events.jsonl"))
    lines = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    return code, lines, folder


@pytest.mark.heavy
def test_the_worker_checks_trains_publishes_and_reports(
    tmp_path: Path,
    tiny_base: ModelInfo,  # noqa: F811
) -> None:
    code, lines, folder = run_job(tmp_path, tiny_base, ROWS)
    assert code == 0
    kinds = [line["type"] for line in lines]
    assert kinds[:2] == ["message", "message"] and kinds[-1] == "result"
    assert lines[1]["data"]["checks"][0]["check"] == "completions match schema"
    steps = [line for line in lines if line["type"] == "metrics"]
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    assert steps[-1]["tokens"] > steps[0]["tokens"] > 0 and steps[-1]["tokens_per_second"] > 0
    checkpoints = [line for line in lines if line["type"] == "checkpoint"]
    assert [c["epoch"] for c in checkpoints] == [1, 2, 3, 4]
    kept = sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert len(kept) == KEEP_CHECKPOINTS and f"step-{checkpoints[-1]['metrics']['step']}" in kept
    result = lines[-1]
    assert (result["name"], result["version"]) == ("tiny", "ft-1")
    assert result["trained_tokens"] == steps[-1]["tokens"]
    evaluation = result["evaluation"]
    best = min(c["metrics"]["valid_loss"] for c in checkpoints)
    assert evaluation["valid_loss"] == best  # the epoch whose weights were kept
    assert 0 <= evaluation["valid_accuracy"] <= 1
    assert evaluation["calibration"]["fit_on"] == "validation"
    assert (tmp_path / "store" / "tiny" / "ft-1" / "manifest.json").is_file()


@pytest.mark.heavy
def test_a_failed_check_ends_the_worker_before_any_step(
    tmp_path: Path,
    tiny_base: ModelInfo,  # noqa: F811
) -> None:
    rows = [*ROWS, ("I was billed twice", "other")]  # one text, two labels
    code, lines, _ = run_job(tmp_path, tiny_base, rows, val_share=0)
    assert code == 2
    failure = lines[-1]
    assert failure["type"] == "failure" and failure["code"] == "data_check_failed"
    assert any(f["status"] == "FAIL" for f in failure["findings"])
    assert not [line for line in lines if line["type"] == "metrics"]
    assert not (tmp_path / "store").exists()


def test_a_worker_dies_with_the_gateway_that_started_it() -> None:
    """A crashed gateway leaves no worker training on, nor one stopped for serving."""
    child = (
        "import os, time\n"
        "from gateway.finetune.worker import die_with_parent\n"
        "die_with_parent()\n"
        "print(os.getpid(), flush=True)\n"
        "time.sleep(120)\n"
    )
    gateway = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}], stdout=subprocess.PIPE)\n"
        "print(p.stdout.readline().decode().strip(), flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", gateway], stdout=subprocess.PIPE)
    try:
        worker = int(parent.stdout.readline())
        assert alive(worker)
        os.kill(worker, signal.SIGSTOP)  # paused for serving, as serving_first does
    finally:
        parent.kill()  # no chance to clean up
        parent.wait()
        parent.stdout.close()
    deadline = time.monotonic() + 10
    while alive(worker):
        assert time.monotonic() < deadline, "the worker outlived its gateway"
        time.sleep(0.05)


def test_a_worker_whose_gateway_died_during_its_imports_exits(tmp_path: Path) -> None:
    """The gateway names itself: killed while the worker still imported the recipe, it
    has left the worker to PID 1, which must then exit instead of training on."""
    marker = tmp_path / "trained-on"
    child = (
        "import time\n"
        "time.sleep(1.0)\n"  # the training imports; the gateway dies meanwhile
        "from gateway.finetune.worker import die_with_parent\n"
        "die_with_parent()\n"
        f"open({str(marker)!r}, 'w').close()\n"
    )
    gateway = (
        "import os, subprocess, sys\n"
        "env = {**os.environ, 'GATEWAY_FINETUNE_PARENT': str(os.getpid())}\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}], env=env)\n"
        "print(p.pid, flush=True)\n"
    )  # exits at once: the worker outlives it and is re-parented
    parent = subprocess.run([sys.executable, "-c", gateway], capture_output=True, check=True)
    worker = int(parent.stdout)
    deadline = time.monotonic() + 30
    while alive(worker):
        assert time.monotonic() < deadline, "the orphaned worker kept running"
        time.sleep(0.05)
    assert not marker.exists()
