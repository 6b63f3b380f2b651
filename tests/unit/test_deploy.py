"""The files in deploy/ are checked by the tools that will read them."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from gateway.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"


@pytest.mark.parametrize(
    "args",
    [["check", "config", "prometheus/prometheus.yml"], ["check", "rules", "prometheus/alerts.yml"]],
)
def test_prometheus_files_pass_promtool(args: list[str]) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: scripts/test.sh installs Debian's prometheus"
    done = subprocess.run(
        [promtool, *args], cwd=DEPLOY, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
