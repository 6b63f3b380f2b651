"""``scripts/setup.sh`` installs the CPU wheel of torch on any Linux machine: it reads what
the configured indexes resolve ``torch==X`` to (pip's ``--dry-run --report``), and only a
GPU build sends it to PyTorch's CPU wheel index. The reports here are pip's own, trimmed:
``pypi.json`` from plain PyPI (the CUDA build an ordinary machine gets), ``cpu-wheel.json``
from this machine's configuration (a local ``+cpu`` wheel)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gateway.config import REPO_ROOT

REPORTS = Path(__file__).parent / "torch_reports"
SCRIPT = REPO_ROOT / "scripts" / "torch_plan.py"


@pytest.fixture(scope="module")
def plan() -> ModuleType:
    spec = importlib.util.spec_from_file_location("torch_plan", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(name: str, **environment: str) -> dict[str, Any]:
    loaded = json.loads((REPORTS / name).read_text())
    loaded["environment"].update(environment)
    return loaded


def test_pypi_torch_on_linux_is_the_gpu_build(plan: ModuleType) -> None:
    verdict = plan.judge_report(report("pypi.json"))
    assert verdict.startswith("gpu 2.13.0 (requires cuda-toolkit, cuda-bindings, nvidia-cudnn")


def test_the_same_wheel_elsewhere_needs_no_gpu_runtime(plan: ModuleType) -> None:
    """The markers are read for the platform pip resolved on, not assumed."""
    assert plan.judge_report(report("pypi.json", platform_system="Darwin")) == "cpu 2.13.0"


def test_a_cpu_wheel_is_taken_from_the_configured_indexes(plan: ModuleType) -> None:
    assert plan.judge_report(report("cpu-wheel.json")) == "cpu 2.13.0+cpu"


@pytest.mark.parametrize(
    ("version", "verdict"),
    [("2.13.0+cu130", "gpu 2.13.0+cu130 (a cu130 build)"),
     ("2.13.0+rocm6.4", "gpu 2.13.0+rocm6.4 (a rocm6.4 build)"),
     ("2.13.0+cpu", "cpu 2.13.0+cpu")],
)  # fmt: skip
def test_a_local_version_label_names_the_build(
    plan: ModuleType, version: str, verdict: str
) -> None:
    assert plan.judge(version, [], {}) == verdict


def test_the_script_reads_the_report_on_stdin() -> None:
    """As setup.sh pipes it: ``pip install --dry-run --report - ... | torch_plan.py``."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        input=(REPORTS / "pypi.json").read_text(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("gpu 2.13.0 (") and done.stdout.count("\n") == 1
    empty = subprocess.run(
        [sys.executable, str(SCRIPT)], input='{"install": []}', capture_output=True, text=True
    )
    assert empty.returncode != 0 and "installs no torch" in empty.stderr
