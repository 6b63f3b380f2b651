"""A tiny consistency run against the real gateway writes all three artifacts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from gateway_tools.bench.consistency.arms import ARM_NAMES
from gateway_tools.bench.consistency.main import add_arguments, run
from tests.integration.conftest import TENANT_KEYS, Gateway

pytestmark = pytest.mark.integration


def test_tiny_run_writes_results_report_and_charts(gateway: Gateway, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--url", gateway.url, "--key", TENANT_KEYS["alpha"], "--max-items", "2",
         "--perturbations", "lower,typo", "--out", str(tmp_path), "--concurrency", "4"]
    )  # fmt: skip
    results = run(args)
    assert list(results["arms"]) == list(ARM_NAMES)
    for name, metrics in results["arms"].items():
        assert metrics["requests"] == 2 * 3, name
        assert len(results["answers"][name]) == 6
    # constrained arms: every answer is schema-valid or a typed error, never invalid text
    for name in ("constrained", "adapter_constrained"):
        for answer in results["answers"][name]:
            assert answer["is_valid"] or answer["error"] is not None, answer
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["arms"] == results["arms"]
    report = (tmp_path / "report.md").read_text()
    assert all(f"| {name} |" in report for name in ARM_NAMES)
    for png in ("arms.png", "latency_vs_prompt.png", "confusion.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG", png
