"""TEST DOUBLE for vLLM's process tree: ``python -m tests.unit.common.lifeline_child MODE
GO_FILE`` is the gateway; it starts an "engine core" with multiprocessing's spawn, as vLLM
does, which starts a "worker" the same way. Each child calls ``lifeline.register`` as
vLLM's plugin loading does and prints ``<role> <pid> <death signal>``.

MODE ``handed``: the gateway calls ``lifeline.hand_down`` first (as ``build_llm`` does);
``plain``: it does not. The engine core waits for GO_FILE to exist before it registers,
so a test can kill the gateway in between (the race the parent check closes).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path

from gateway.common import lifeline


def worker() -> None:
    lifeline.register()
    print("worker", os.getpid(), lifeline.death_signal(), flush=True)
    time.sleep(120)


def engine_core(go_file: str) -> None:
    print("started", os.getpid(), 0, flush=True)
    while not Path(go_file).exists():
        time.sleep(0.02)
    lifeline.register()
    print("core", os.getpid(), lifeline.death_signal(), flush=True)
    multiprocessing.get_context("spawn").Process(target=worker).start()
    time.sleep(120)


def main(mode: str, go_file: str) -> None:
    if mode == "handed":
        lifeline.hand_down()
    multiprocessing.get_context("spawn").Process(target=engine_core, args=(go_file,)).start()
    time.sleep(120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
