"""``scripts/setup.sh`` installs the CPU wheel of torch on any Linux machine: it reads what
the configured indexes resolve ``torch==X`` to (pip's ``--dry-run --report``), and only a
GPU build sends it to PyTorch's CPU wheel index. The reports here are pip's own, trimmed:
``pypi.json`` from plain PyPI (the CUDA build an ordinary machine gets), ``cpu-wheel.json``
from this machine's configuration (a local ``+cpu`` wheel)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gateway.config import REPO_ROOT

REPORTS = Path(__file__).parent / "torch_reports"
SCRIPT = REPO_ROOT / "scripts" / "torch_plan.py"
ENV = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "GATEWAY_SETUP_APT": "0"}


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


def setup_copy(tmp_path: Path, torch_metadata: str | None) -> Path:
    """The files setup.sh reads, in a scratch repository, with a fresh .venv holding at
    most a torch's metadata (no code: the script stops before it would import it)."""
    for name in ("scripts/setup.sh", "scripts/torch_plan.py", "pyproject.toml",
                 "tools/pyproject.toml", "setup.py",
                 "gateway/engine/grouped_lora/kernel.c"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((REPO_ROOT / name).read_text())
    if torch_metadata is not None:
        subprocess.run([sys.executable, "-m", "venv", tmp_path / ".venv"], check=True)
        site = next((tmp_path / ".venv" / "lib").glob("python3*")) / "site-packages"
        (site / "torch-2.13.0.dist-info").mkdir(parents=True)
        (site / "torch-2.13.0.dist-info" / "METADATA").write_text(torch_metadata)
    return tmp_path / "scripts" / "setup.sh"


def test_setup_for_cpu_refuses_a_cuda_torch_already_installed(tmp_path: Path) -> None:
    cuda_torch = (
        "Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0\n"
        'Requires-Dist: nvidia-cudnn-cu13==9.20.0.48; platform_system == "Linux"\n'
    )
    if sys.platform != "linux":
        pytest.skip("the marker names Linux")
    script = setup_copy(tmp_path, cuda_torch)
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                          env=ENV | {"HOME": str(tmp_path)})  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        "setup: .venv holds torch 2.13.0 (requires nvidia-cudnn-cu13), a GPU build, but the "
        "CPU engine needs the CPU wheel: remove .venv"
    )


@pytest.mark.skipif(
    Path("/proc/driver/nvidia/version").exists() or bool(shutil.which("nvidia-smi")),
    reason="this machine has an NVIDIA driver",
)
def test_setup_for_cuda_without_a_gpu_says_so_in_one_line(tmp_path: Path) -> None:
    script = setup_copy(tmp_path, None)
    env = ENV | {"GATEWAY_ENGINE_BUILD": "cuda"}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("setup: GATEWAY_ENGINE_BUILD=cuda needs an NVIDIA GPU")
    assert not (tmp_path / ".venv").exists()  # stopped before anything was made
