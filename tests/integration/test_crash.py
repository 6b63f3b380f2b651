"""A crash leaves nothing running, and the start after it comes up (issue 38).

Each of the gateway's processes is killed with SIGKILL in turn, a real one each time:
the engine's worker (``VLLM::Worker``), its engine core (``VLLM::EngineCore``) and the
gateway itself. After each kill, within ``GONE_WITHIN_S`` no process of that gateway may
be left (before ``common.lifeline``, a killed gateway left its engine core and worker
running, holding gigabytes); the adapter store and the registry must be as they were;
and a new ``gateway serve`` on the same store must reach /ready: that start is the next
round's gateway, so four engine starts cover the three kills. A killed engine process
must also take the gateway down with it: 503 ``engine_unavailable`` first, then an exit
that an orchestrator sees. (The fine-tuning worker's kill is shown with the stand-in
worker: ``tests/unit/finetune/test_worker_killed.py``.)
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from gateway_tools.launch import launch
from tests.integration.conftest import DEMO_ADAPTER

pytestmark = pytest.mark.integration

GONE_WITHIN_S = 30  # the stated bound: seconds after the kill until nothing is left
# A small engine: its start is what this module costs.
ENV = {"GATEWAY_KV_CACHE_GIB": "0.25", "GATEWAY_MAX_MODEL_LEN": "1024",
       "GATEWAY_MAX_TOKENS_CAP": "512", "GATEWAY_MAX_NUM_SEQS": "4",
       "GATEWAY_ENGINE_FAILURE_EXIT_S": "3"}  # fmt: skip
TITLES = {"worker": "VLLM::Worker", "core": "VLLM::EngineCore"}
CHAT = {"model": "demo", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}


def alive(proc: psutil.Process) -> bool:
    """Running or stopped; a zombie (dead, not yet reaped) is not alive."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def left_after(processes: list[psutil.Process], killed: float, seconds: float) -> list[str]:
    """Those of ``processes`` still alive ``seconds`` after ``killed`` (sooner once none
    is); how long they took goes to the test's output (``-s``), for the kill matrix."""
    while any(alive(p) for p in processes) and time.monotonic() < killed + seconds:
        time.sleep(0.1)
    print(f"all gone {time.monotonic() - killed:.1f} s after the kill", flush=True)
    return [f"{p.pid} {p.name()}" for p in processes if alive(p)]


def store_digest(store: Path) -> dict[str, str]:
    return {
        str(path.relative_to(store)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(store.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def seen() -> Iterator[list[psutil.Process]]:
    """Every process of every gateway started here; whatever a failing test left is
    killed, so that no other test competes with it for memory."""
    found: list[psutil.Process] = []
    yield found
    for proc in found:
        if alive(proc):
            proc.kill()


def test_every_sigkill_leaves_nothing_and_the_next_start_comes_up(
    tmp_path: Path, seen: list[psutil.Process]
) -> None:
    store = tmp_path / "store"
    shutil.copytree(DEMO_ADAPTER, store / "demo" / "v1")
    before: dict[str, str] | None = None
    for victim in ("worker", "core", "gateway", None):  # None: the last start only
        log = tmp_path / f"after-{victim}.log"
        with launch(log, adapters={"demo": "v1"}, store=store, env=ENV) as gw:
            registry = json.loads((store / "registry.json").read_text())
            assert registry["adapters"]["demo"]["current"] == "v1"  # it came up whole
            if before is not None:
                assert store_digest(store) == before  # the crash changed nothing stored
            if victim is None:
                assert httpx.get(gw.url + "/ready", timeout=10).status_code == 200
                return
            root = psutil.Process(gw.pid)
            processes = [root, *root.children(recursive=True)]
            seen.extend(processes)
            names = {p.pid: p.name() for p in processes}
            assert set(TITLES.values()) <= set(names.values()), names
            before = store_digest(store)
            target = root if victim == "gateway" else next(
                p for p in processes if names[p.pid] == TITLES[victim]
            )  # fmt: skip
            target.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            print(f"killed the {victim} of {sorted(names.values())}", flush=True)
            if victim != "gateway":
                # the converse: a dead engine process takes the gateway down, loudly
                answer = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=60)
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"]["code"] == "engine_unavailable"
                assert answer.headers.get("Retry-After")
                assert root.wait(timeout=60) != 0  # exits so an orchestrator restarts it
                assert re.search(r"inference engine has stopped", log.read_text())
            left = left_after(processes, killed, GONE_WITHIN_S)
            assert left == [], f"left after killing the {victim}"
