"""``gateway serve``'s check that the engine has room (``engine.preflight``): the memory
vLLM's CPU worker will insist on, read as vLLM reads it, and the vLLM processes a crashed
front end left behind, named so that the operator can stop them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from gateway.common.usage import UsageError
from gateway.engine import preflight

# A process titled like vLLM's engine core, then orphaned (its parent exits at once),
# as an engine core was when its gateway was SIGKILLed before the lifeline existed.
ORPHAN = (
    "import os, sys, time, setproctitle\n"
    "if os.fork():\n"
    "    os._exit(0)\n"
    "setproctitle.setproctitle('VLLM::EngineCore')\n"
    "print(os.getpid(), flush=True)\n"
    "sys.stdout.close()\n"
    "time.sleep(60)\n"
)
CHILD = "import setproctitle, time; setproctitle.setproctitle('VLLM::EngineCore'); time.sleep(60)"


@pytest.fixture
def orphan() -> Iterator[int]:
    done = subprocess.run([sys.executable, "-c", ORPHAN], capture_output=True, text=True)
    pid = int(done.stdout)
    yield pid
    subprocess.run(["kill", "-9", str(pid)], check=False)


def test_memory_is_read_as_vllm_reads_it() -> None:
    from vllm.utils.cpu_resource_utils import get_allowed_cpu_list, get_memory_node_info

    theirs = get_memory_node_info(get_allowed_cpu_list()[0].numa_node)
    ours = preflight.node_memory()
    assert ours.total == theirs.total_memory
    assert abs(ours.available - theirs.available_memory) < 0.05 * theirs.total_memory


def test_the_engine_needs_its_kv_cache_or_its_share_of_the_node() -> None:
    assert preflight.engine_needs(0.25, 0.3, 10 * 2**30) == 2**28
    assert preflight.engine_needs(None, 0.3, 10 * 2**30) == 3 * 2**30


def test_a_start_that_fits_passes_and_one_that_does_not_says_so_in_one_line() -> None:
    available = preflight.node_memory().available
    preflight.check_engine_room(0.001, 0.3)
    with pytest.raises(UsageError) as refused:
        preflight.check_engine_room(2 * available / 2**30, 0.3)
    message = str(refused.value)
    assert message.startswith("not enough memory for the engine: it reserves ")
    assert "kv_cache_gib" in message and "\n" not in message


def test_leftover_engines_are_named_with_their_pids(orphan: int) -> None:
    with subprocess.Popen([sys.executable, "-c", CHILD]) as owned:  # its front end lives
        try:
            deadline = time.monotonic() + 10
            while True:
                found = {p["pid"] for p in preflight.leftover_engines()}
                if orphan in found or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert orphan in found
            assert owned.pid not in found
            with pytest.raises(UsageError, match=rf"kill .*\b{orphan}\b"):
                preflight.check_engine_room(2 * preflight.node_memory().available / 2**30, 0.3)
        finally:
            owned.kill()


def test_the_process_on_a_port_is_named() -> None:
    import os
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        holder = preflight.port_holder(port)
        assert holder is not None and holder.startswith(f"pid {os.getpid()} (")
