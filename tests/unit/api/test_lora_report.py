"""``/ready`` and ``gateway_build_info`` say which LoRA path and decode kernel the engine
process runs (what ``plugin.status`` answers through the worker extension), and
``gateway_lora_kernel_fallbacks_total`` counts engine starts that fell back to the torch ops."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import Settings
from tests.fake_engine import FakeEngine
from tests.unit.conftest import started_client

CASES = {
    # plugin.status() -> (/ready's "lora", fallbacks counted)
    "shipped": ({"grouped": True, "kernel": "shipped-avx2"},
                {"path": "grouped", "kernel": "shipped-avx2"}, 0),
    "fallback": ({"grouped": True, "kernel": "torch-fallback"},
                 {"path": "grouped", "kernel": "torch-fallback"}, 1),
    "off": ({"grouped": True, "kernel": "off"}, {"path": "grouped", "kernel": "off"}, 0),
    "vllm": ({"grouped": False, "kernel": "none"}, {"path": "vllm", "kernel": "none"}, 0),
}  # fmt: skip


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


@pytest.mark.parametrize("case", CASES)
def test_ready_and_build_info_name_the_lora_kernel_and_fallbacks_are_counted(
    case: str, settings: Settings
) -> None:
    status, want, fallbacks = CASES[case]
    for client in started_client(settings, FakeEngine(lora_path=status)):
        ready = client.get("/ready").json()
        assert ready == {"status": "ready", "lora": want}
        found = _samples(client.get("/metrics").text)
        [(info, _)] = found["gateway_build_info"]
        assert (info["lora_path"], info["lora_kernel"]) == (want["path"], want["kernel"])
        [(_, counted)] = found["gateway_lora_kernel_fallbacks_total"]
        assert counted == fallbacks


def test_before_the_engine_reports_the_metric_says_pending(settings: Settings) -> None:
    """An engine that reports nothing (a test double, or not started): no fallback is
    counted and the labels say so rather than guessing."""
    for client in started_client(settings, FakeEngine()):
        assert client.get("/ready").json()["lora"] == {"path": "pending", "kernel": "pending"}
        found = _samples(client.get("/metrics").text)
        assert found["gateway_lora_kernel_fallbacks_total"] == [({}, 0.0)]
