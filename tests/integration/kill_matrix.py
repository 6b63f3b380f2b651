"""The kill matrix of issue 38, one row a run (not a test; ``test_crash.py`` asserts it):

    flock /tmp/engine.lock python -m tests.integration.kill_matrix {gateway|core|worker} WORK

starts a small gateway on a copy of the demo adapter under WORK, SIGKILLs the chosen
process of it (the gateway, ``VLLM::EngineCore`` or ``VLLM::Worker``), sends one chat
request if the gateway should still answer, waits up to 20 s for the whole process tree
to go, then prints one JSON line: the tree, the answer's status, what was left (then
killed here) and how long it took to be gone. docs/benchmarks/kill-matrix/ holds the rows
measured before and after ``gateway.common.lifeline``.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from pathlib import Path

import httpx
import psutil

from gateway_tools.launch import launch
from tests.integration.conftest import DEMO_ADAPTER
from tests.integration.test_crash import CHAT, ENV, TITLES, alive

WAIT_S = 20


def describe(proc: psutil.Process) -> str:
    try:
        rss = proc.memory_info().rss >> 20
        return f"{proc.pid} {proc.name()} ppid={proc.ppid()} rss={rss}MiB"
    except psutil.NoSuchProcess:
        return f"{proc.pid} gone"


def run(target: str, work: Path) -> dict[str, object]:
    store = work / "store"
    if not store.exists():
        shutil.copytree(DEMO_ADAPTER, store / "demo" / "v1")
    started = time.monotonic()
    log = work / f"gw-{target}.log"
    with launch(log, adapters={"demo": "v1"}, store=store, env=ENV) as gw:
        ready_s = time.monotonic() - started
        root = psutil.Process(gw.pid)
        tree = [root, *root.children(recursive=True)]
        before = [describe(p) for p in tree]
        victim = (
            root if target == "gateway" else next(p for p in tree if p.name() == TITLES[target])
        )
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        status = None
        if target != "gateway":
            try:
                url = gw.url + "/v1/chat/completions"
                status = httpx.post(url, json=CHAT, timeout=30).status_code
            except httpx.TransportError:
                status = "no answer"
        while any(alive(p) for p in tree) and time.monotonic() < killed + WAIT_S:
            time.sleep(0.1)
        gone_s = time.monotonic() - killed
        left = [describe(p) for p in tree if alive(p)]
        for proc in tree:
            if alive(proc):
                proc.kill()
    return {"killed": target, "ready_s": round(ready_s, 1), "tree": before,
            "answer_after_kill": status, f"left_after_{WAIT_S}s": left,
            "all_gone_s": None if left else round(gone_s, 1)}  # fmt: skip


if __name__ == "__main__":
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run(sys.argv[1], out)), flush=True)
