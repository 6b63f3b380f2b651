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
  that its parent is still the process named in ``GATEWAY_LIFELINE`` and, if that one
  is dead, exits at once. (``multiprocessing.parent_process()`` cannot tell: vLLM loads
  its plugins while a spawned process unpickles its arguments, before that is set.)

See docs/robustness.md ("Crashes leave nothing running") for the other ways considered.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

ENV_VAR = "GATEWAY_LIFELINE"  # the pid of the process whose children die with it
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PR_GET_PDEATHSIG = 2


def hand_down() -> None:
    """In the process about to start the engine: its engine processes die with it."""
    os.environ[ENV_VAR] = str(os.getpid())
    # the plugin runs only in processes that import vLLM afresh (see the module doc)
    os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"


def register() -> None:
    """vLLM's general-plugin hook, called once in each of vLLM's processes (in a spawned
    one while it unpickles its arguments, before ``multiprocessing`` even records its
    parent): a child of the process that handed the line down dies with it, and hands
    the line down to its own children (the engine core to its worker)."""
    handed = os.environ.get(ENV_VAR, "")
    if not handed.isdigit() or int(handed) == os.getpid():
        return  # not asked for, or the gateway itself (it must outlive its own shell)
    if die_with_parent(int(handed)):
        os.environ[ENV_VAR] = str(os.getpid())


def die_with_parent(parent: int) -> bool:
    """SIGKILL this process when ``parent``, the process expected to have started it,
    dies. If ``parent`` is dead already (it died before the request took effect), exit
    now; if it lives but is not this process's parent (started through another process,
    a shell), change nothing and return False."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    _prctl(libc, signal.SIGKILL)
    if os.getppid() == parent:
        return True
    if not _alive(parent):
        os._exit(1)
    _prctl(libc, 0)
    return False


def _prctl(libc: ctypes.CDLL, signum: int) -> None:
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def death_signal() -> int:
    """The signal this process gets when its parent dies (0: none); for logs and tests."""
    if sys.platform != "linux":
        return 0
    found = ctypes.c_int(0)
    ctypes.CDLL(None, use_errno=True).prctl(PR_GET_PDEATHSIG, ctypes.byref(found), 0, 0, 0)
    return found.value
