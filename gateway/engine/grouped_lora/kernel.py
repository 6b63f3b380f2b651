"""The C kernel for decode-sized batches (``kernel.c``), compiled where it runs.

Why C: the engine runs eagerly on CPU, so the torch path's LoRA term is a dozen ops per
layer, and each op's dispatch (about 5 us here) costs more than its arithmetic at decode
sizes. One call does the whole term for every token and slice.

Threads: it is built with OpenMP and loaded after torch, so its ``libgomp.so.1`` resolves
to the one torch already loaded (the loader matches by soname): one thread pool, sized
by ``torch.set_num_threads`` as vLLM's CPU worker sets it.

Why compiled at run time: it is compiled with ``-march=native`` for the machine that runs
it, once per process into a private temporary directory that is removed as soon as the
library is loaded, so nothing is left behind and no stale build is ever picked up (about
half a second with gcc). Without a C compiler, or if the build fails, ``load`` returns
None once, logs why, and the fused torch path serves every batch.
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
ENV_VAR = "GATEWAY_LORA_KERNEL"  # the ``lora_kernel`` setting; "0": the fused torch path only
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c11")
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p


@functools.cache
def load() -> ctypes.CDLL | None:
    """The compiled kernel, or None (kernel turned off, no compiler, failed build)."""
    if os.environ.get(ENV_VAR, "1") == "0":
        log.info("LoRA decode kernel off (lora_kernel): the fused torch path serves")
        return None
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        log.warning("no C compiler: the LoRA decode kernel is not built (install gcc for it)")
        return None
    try:
        lib = _build(compiler)
    except (OSError, subprocess.SubprocessError) as exc:  # no /tmp, noexec mount, timeout
        log.warning("the LoRA decode kernel did not build or load (%s): %s", compiler, exc)
        return None
    if lib is None:
        return None
    fn = lib.gateway_lora_decode
    fn.restype = ctypes.c_int
    fn.argtypes = [_I64, _PTR, _I64, _PTR, _I64, _PTR, _PTR, _I64, _I64, _I64, _PTR, _PTR, _I64]
    log.info("LoRA decode kernel built with %s (pid %d)", compiler, os.getpid())
    return lib


def _build(compiler: str) -> ctypes.CDLL | None:
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
        return ctypes.CDLL(str(library))  # mapped now: the file can go with the directory
