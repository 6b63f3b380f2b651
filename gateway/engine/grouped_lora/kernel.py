"""The C kernel for decode-sized batches (``kernel.c``), built before it ships.

Why C: the engine runs eagerly on CPU, so the torch path's LoRA term is a dozen ops per
layer, and each op's dispatch (about 5 us here) costs more than its arithmetic at decode
sizes. One call does the whole term for every token and slice.

Where it comes from: the package's build (``setup.py``) compiles it once, portably (no
``-march=native``: the hot loop has one clone per ISA and the CPU picks one at load
time), into ``liblora_kernel.so`` beside this file. The serving machine needs no
compiler, writes nothing and loads it from the package directory, so a read-only root
and a noexec /tmp are fine, and a VM moved to an older CPU gets an older clone rather
than SIGILL. Only the development opt-in ``lora_kernel: build``
(``GATEWAY_LORA_KERNEL=build``) compiles ``kernel.c`` here with the host's compiler and
``-march=native``, into a private temporary directory removed once it is loaded.

Threads: it is built with OpenMP and loaded after torch, so its ``libgomp.so.1`` resolves
to the one torch already loaded (the loader matches by soname): one thread pool, sized
by ``torch.set_num_threads`` as vLLM's CPU worker sets it.

Without the library (the install could not compile it) or if it fails to load, ``load``
returns None once, logs a warning, and the fused torch path serves every batch;
``describe`` says which, for ``/ready`` and the metrics.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernel.c")
SHIPPED = Path(__file__).with_name("liblora_kernel.so")  # setup.py's LIBRARY
ENV_VAR = "GATEWAY_LORA_KERNEL"  # the ``lora_kernel`` setting: "1" shipped, "0" off, "build"
BUILD = "build"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c11")
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p


def mode() -> str:
    """The kernel asked for: off, shipped or build (``GATEWAY_LORA_KERNEL``, the setting)."""
    value = os.environ.get(ENV_VAR, "1").strip().lower()
    if value in ("0", "false", "off", "no"):
        return "off"
    return BUILD if value == BUILD else "shipped"


@functools.cache
def load() -> ctypes.CDLL | None:
    """The kernel, or None (turned off, not shipped, failed to load or build)."""
    return _loaded()[0]


def describe() -> str:
    """Which kernel this process runs: ``shipped-<isa>`` (the packaged library and the
    clone its CPU picked), ``built-native`` (the ``build`` opt-in), ``off`` (the setting)
    or ``torch-fallback`` (wanted, but not there or not loadable)."""
    return _loaded()[1]


def reset() -> None:
    """Forget what was loaded, so the next ``load`` decides again (tests)."""
    load.cache_clear()
    _loaded.cache_clear()


@functools.cache
def _loaded() -> tuple[ctypes.CDLL | None, str]:
    chosen = mode()
    if chosen == "off":
        log.info("LoRA decode kernel off (lora_kernel): the fused torch path serves")
        return None, "off"
    lib = _build() if chosen == BUILD else _shipped()
    if lib is None:
        return None, "torch-fallback"
    fn = lib.gateway_lora_decode
    fn.restype = ctypes.c_int
    fn.argtypes = [_I64, _PTR, _I64, _PTR, _I64, _PTR, _PTR, _I64, _I64, _I64, _PTR, _PTR, _I64]
    if chosen == BUILD:
        return lib, "built-native"
    isa = lib.gateway_lora_isa
    isa.restype, isa.argtypes = ctypes.c_char_p, []
    name = f"shipped-{isa().decode()}"
    log.info("LoRA decode kernel %s loaded from %s (pid %d)", name, SHIPPED, os.getpid())
    return lib, name


def _shipped() -> ctypes.CDLL | None:
    if not SHIPPED.is_file():
        log.warning("the LoRA decode kernel was not built when the package was installed "
                    "(%s missing: no C compiler then?); the slower torch ops serve. "
                    "Reinstall with gcc, or set lora_kernel: build to compile it here",
                    SHIPPED)  # fmt: skip
        return None
    try:
        return ctypes.CDLL(str(SHIPPED))
    except OSError as exc:  # a broken file, a missing libgomp
        log.warning("the shipped LoRA decode kernel did not load (%s); the torch ops serve",
                    exc)  # fmt: skip
        return None


def _build() -> ctypes.CDLL | None:
    """The development opt-in: compile with the host's compiler for this very CPU."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        log.warning("lora_kernel: build, but no C compiler: the torch ops serve")
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="gateway-lora-kernel-") as work:
            library = Path(work) / "kernel.so"
            build = subprocess.run(
                [compiler, *FLAGS, str(SOURCE), "-o", str(library)],
                capture_output=True, text=True, check=False, timeout=120,
            )  # fmt: skip
            if build.returncode != 0:
                log.warning("the LoRA decode kernel did not build (%s): %s", compiler,
                            build.stderr.strip()[-2000:])  # fmt: skip
                return None
            lib = ctypes.CDLL(str(library))  # mapped now: the file can go with the directory
    except (OSError, subprocess.SubprocessError) as exc:  # no /tmp, noexec mount, timeout
        log.warning("the LoRA decode kernel did not build or load (%s): %s", compiler, exc)
        return None
    log.info("LoRA decode kernel built with %s (lora_kernel: build, pid %d)", compiler,
             os.getpid())  # fmt: skip
    return lib
