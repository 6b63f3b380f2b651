"""Builds the LoRA decode kernel (``gateway/engine/grouped_lora/kernel.c``) into the package.

Everything else about the package is in ``pyproject.toml``; this file only adds a build
step, because the kernel is a plain shared library loaded with ``ctypes`` (not a Python
extension), compiled when the package is built so that the serving machine needs no
compiler and writes nothing to run it. The build is portable: no ``-march=native``; the
hot loop carries one clone per ISA (``target_clones`` in ``kernel.c``) and the CPU picks
at load time. An editable install (``pip install -e .``, ``scripts/setup.sh``) builds it
into the source tree, where the package is imported from.

Without a C compiler, or if the build fails, the install still succeeds and says so
loudly: the engine then serves the LoRA term with the torch ops, and ``/ready``, the
``gateway_build_info`` metric and ``gateway_lora_kernel_fallbacks_total`` say that too.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

PACKAGE_DIR = Path("gateway", "engine", "grouped_lora")
SOURCE = PACKAGE_DIR / "kernel.c"
LIBRARY = "liblora_kernel.so"  # the name gateway/engine/grouped_lora/kernel.py loads
FLAGS = ("-O3", "-fopenmp", "-fPIC", "-shared", "-std=c11")  # never -march=native here


def build_kernel(out_dir: Path) -> Path | None:
    """Compile the kernel into ``out_dir``; None (after a loud warning) when it cannot."""
    compiler = shlex.split(os.environ.get("CC", "cc")) or ["cc"]
    if shutil.which(compiler[0]) is None:
        return _warn(f"no C compiler ({compiler[0]!r} not found)")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / LIBRARY
    try:
        done = subprocess.run(
            [*compiler, *FLAGS, str(SOURCE), "-o", str(target)],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return _warn(f"{compiler[0]} failed: {exc}")
    if done.returncode != 0:
        output = done.stderr.strip()[-2000:] or "no output"
        return _warn(f"{compiler[0]} exited with {done.returncode}: {output}")
    print(f"built the LoRA decode kernel: {target}", file=sys.stderr)
    return target


def _warn(why: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\nWARNING: the LoRA decode kernel was NOT built: {why}.\n"
          "The package installs and serves, but the grouped LoRA path uses the slower torch "
          "ops\n(see docs/lora-on-cpu.md). Install a C compiler with OpenMP (gcc) and "
          f"reinstall for it.\n{bar}\n", file=sys.stderr)  # fmt: skip
    return None


class BuildPyWithKernel(build_py):
    """build_py, plus the kernel: into the build tree for a wheel, or next to its source
    for an editable install (which imports the package from the source tree)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            build_kernel(PACKAGE_DIR)
        else:
            build_kernel(Path(self.build_lib) / PACKAGE_DIR)


class BinaryDistribution(Distribution):
    """A wheel carrying a compiled library is platform-specific, not ``py3-none-any``."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildPyWithKernel}, distclass=BinaryDistribution)
