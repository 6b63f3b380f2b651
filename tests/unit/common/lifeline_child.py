"""TEST DOUBLE for vLLM's process tree: ``python -m tests.unit.common.lifeline_child MODE
GO_FILE`` is the gateway; it starts an "engine core" with multiprocessing's spawn, as vLLM
does, which starts a "worker" the same way. Each child calls ``lifeline.register`` as
vLLM's plugin loading does and prints ``<role> <pid> <death signal>``.

MODE ``handed``: the gateway calls ``lifeline.hand_down`` first (as ``build_llm`` does);
``plain``: it does not; ``late``: it does, and the engine core loads the plugins only
once GO_FILE exists, so a test can kill the gateway in between (the race the parent
check closes). Otherwise each child loads them while it unpickles its arguments.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.common import lifeline


class LoadsPlugins:
    """An argument whose unpickling loads the plugins, as vLLM's config does in its spawned
    processes: before ``multiprocessing`` has recorded the process's parent."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (loaded, ())


def loaded() -> LoadsPlugins:
    lifeline.register()
    return LoadsPlugins()


def worker(_config: LoadsPlugins) -> None:
    print("worker", os.getpid(), lifeline.death_signal(), flush=True)
    time.sleep(120)


def engine_core(go_file: str, config: LoadsPlugins | None) -> None:
    print("started", os.getpid(), 0, flush=True)
    while not Path(go_file).exists():
        time.sleep(0.02)
    if config is None:  # the race: the plugins load only after the go file appears
        lifeline.register()
    print("core", os.getpid(), lifeline.death_signal(), flush=True)
    multiprocessing.get_context("spawn").Process(target=worker, args=(LoadsPlugins(),)).start()
    time.sleep(120)


def main(mode: str, go_file: str) -> None:
    if mode != "plain":
        lifeline.hand_down()
    config = None if mode == "late" else LoadsPlugins()
    core = multiprocessing.get_context("spawn").Process(target=engine_core, args=(go_file, config))
    # started from a pool thread that lives on, as the gateway's asyncio.to_thread does
    with ThreadPoolExecutor(1) as pool:
        pool.submit(core.start).result()
        time.sleep(120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
