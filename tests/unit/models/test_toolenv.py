"""The quantizer's venv is used only when its stamp says the install finished with the
requirements asked for now; anything else is removed and built again."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.models import ModelError
from gateway.models.toolenv import STAMP, requirements, tool_env

VERSIONS = {"llmcompressor": "0.14.0.1", "compressed-tensors": "0.19.0",
            "transformers": "5.17.0", "torch": "2.13.0+cpu"}  # fmt: skip


class Installer:
    """Stands in for ``python -m venv``, pip and the version query; ``fail`` names the
    step that exits 1."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.steps: list[str] = []

    def __call__(self, command: Sequence[str]) -> int:
        step = (
            "venv"
            if command[1:3] == ["-m", "venv"]
            else ("pip" if "pip" in command else "versions")
        )
        self.steps.append(step)
        if step == self.fail:
            return 1
        if step == "venv":
            (Path(command[3]) / "bin").mkdir(parents=True)
        if step == "versions":
            Path(command[3]).write_text(json.dumps(VERSIONS))
        return 0


def test_the_first_use_installs_and_stamps_then_reuses(tmp_path: Path) -> None:
    install = Installer()
    env = tool_env(tmp_path, install)
    assert install.steps == ["venv", "pip", "versions"]
    assert env.versions == VERSIONS
    assert env.python == tmp_path / "tools" / "llmcompressor-0.14.0.1" / "bin" / "python"
    again = Installer()
    assert tool_env(tmp_path, again) == env
    assert again.steps == []


def test_the_pins_are_the_tool_and_the_gateways_torch() -> None:
    torch, tool = requirements()
    assert tool == "llmcompressor==0.14.0.1"
    assert torch.startswith("torch==") and "+" not in torch


def test_a_half_made_venv_is_rebuilt_not_used(tmp_path: Path) -> None:
    home = tmp_path / "tools" / "llmcompressor-0.14.0.1"
    (home / "lib").mkdir(parents=True)
    (home / "lib" / "half-written").write_text("")
    install = Installer()
    tool_env(tmp_path, install)
    assert install.steps == ["venv", "pip", "versions"]
    assert not (home / "lib" / "half-written").exists()


def test_a_stamp_for_other_requirements_is_rebuilt(tmp_path: Path) -> None:
    tool_env(tmp_path, Installer())
    stamp = tmp_path / "tools" / "llmcompressor-0.14.0.1" / STAMP
    stamp.write_text(json.dumps({"requirements": ["torch==0.1"], "versions": {}}))
    install = Installer()
    assert tool_env(tmp_path, install).versions == VERSIONS
    assert install.steps == ["venv", "pip", "versions"]


def test_a_failed_install_leaves_no_venv(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="failed at pip install torch=="):
        tool_env(tmp_path, Installer(fail="pip"))
    assert not (tmp_path / "tools" / "llmcompressor-0.14.0.1").exists()


def test_the_venv_is_made_by_the_running_interpreter(tmp_path: Path) -> None:
    commands: list[list[str]] = []

    def record(command: Sequence[str]) -> int:
        commands.append(list(command))
        return 1

    with pytest.raises(ModelError, match="creating the virtual environment"):
        tool_env(tmp_path, record)
    assert commands == [
        [sys.executable, "-m", "venv", str(tmp_path / "tools" / "llmcompressor-0.14.0.1")]
    ]
