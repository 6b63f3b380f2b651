"""The engine's processes die with the gateway, however the gateway dies.

vLLM runs the engine in processes of its own: the gateway starts the engine core
(``VLLM::EngineCore``), which starts its worker (``VLLM::Worker``). vLLM stops them when
the gateway shuts down, and a worker follows a dead engine core, but nothing stops the
engine core when the gateway itself is killed (SIGKILL, the OOM killer, a segfault): it
and its worker were re-parented to PID 1 and kept their memory (gigabytes of KV cache)
until someone killed them by hand, and the next start competed with them for it.

The kernel can do it: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in a process asks for SIGKILL
when its parent dies. vLLM calls its general plugins (``register`` below, entry point
``vllm.general_plugins`` in pyproject.toml) in every process it starts, before the
engine core starts its worker and before either loads a model, so each of vLLM's
processes asks for it there: the engine core dies with the gateway, the worker with the
engine core. ``hand_down`` (called by the gateway before it builds the engine) turns it
on, and makes vLLM start its processes with ``spawn``: a forked child inherits the
parent's "plugins already loaded" and would never call ``register``.

Two details of the kernel's rule matter:
- the parent that counts is the *thread* that started the child. The gateway builds the
  engine in a thread of asyncio's default executor, whose threads live as long as the
  event loop (they are only joined at its shutdown, after the engine has stopped).
- a parent that died before the request took effect is missed: the child then checks
  that its parent is still the process that started it and exits at once if not.

See docs/robustness.md ("Crashes leave nothing running") for the other ways considered.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys

ENV_VAR = "GATEWAY_LIFELINE"  # "1": processes started by multiprocessing die with their parent
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PR_GET_PDEATHSIG = 2


def hand_down() -> None:
    """In the process about to start the engine: its engine processes die with it."""
    os.environ[ENV_VAR] = "1"
    # the plugin runs only in processes that import vLLM afresh (see the module doc)
    os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"


def register() -> None:
    """vLLM's general-plugin hook, called once in each of vLLM's processes: if the
    gateway asked for it and this process was started by ``multiprocessing`` (vLLM's
    engine core and workers; not the gateway itself), die with the process that
    started it."""
    if os.environ.get(ENV_VAR) != "1":
        return
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    die_with_parent(parent.pid)


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when ``parent`` (the process that started it) dies; exit now
    if it has died already (this process was then re-parented before the request)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent:
        os._exit(1)


def death_signal() -> int:
    """The signal this process gets when its parent dies (0: none); for logs and tests."""
    if sys.platform != "linux":
        return 0
    found = ctypes.c_int(0)
    ctypes.CDLL(None, use_errno=True).prctl(PR_GET_PDEATHSIG, ctypes.byref(found), 0, 0, 0)
    return found.value
