"""Issue 21's hostile inputs against the real gateway and the real vLLM engine: the
smaller round of ``tests/unit/api/test_fuzz_hostile.py``, for what only the real
tokenizer, sampler and HTTP server can get wrong (a lone surrogate reaching the
tokenizer, a 64-bit seed, an empty stop string, a header over the head cap).

The same contract and the same watch on ``/metrics`` and the bystander tenant; only
what HTTP/1.1 can carry is sent. Admin routes are left to the unit round: they never
reach the engine, and this gateway is shared with the other integration tests.

Cases: the issue's reproductions, the field sweep, and ``GATEWAY_HOSTILE_REAL_EXAMPLES``
(default 50) drawn with a fixed seed; the count is printed at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import strategies as st

from tests.hostile_requests import (
    Target,
    chat_requests,
    classify_requests,
    header_requests,
    issue_requests,
    sweep_requests,
)
from tests.integration.conftest import ADMIN_KEY, METRICS_KEY, TENANT_KEYS, Gateway
from tests.probe import Bystander, Probe

pytestmark = pytest.mark.integration
EXAMPLES = int(os.environ.get("GATEWAY_HOSTILE_REAL_EXAMPLES", "50"))
OPERATOR_NAMES = frozenset(
    {"alpha", "beta", "tenant-a", "tenant-b", "demo", "banking77", "intent_classification"}
)
BETA = Bystander(
    "beta", TENANT_KEYS["beta"], "/v1/classify",
    {"text": "I was charged twice for my subscription", "adapter": "demo"},
    frozenset({("adapter", "demo"), ("endpoint", "classify")}),
)  # fmt: skip


@pytest.fixture(scope="module")
def probe(gateway: Gateway, request: pytest.FixtureRequest) -> Iterator[Probe]:
    target = Target(TENANT_KEYS["alpha"], ADMIN_KEY, METRICS_KEY, "tenant-a", b"", wire=True)
    with httpx.Client(base_url=gateway.url, timeout=300) as client:
        probe = Probe(client, target, BETA, OPERATOR_NAMES)
        probe.bystander_asks()
        yield probe
    report = request.config.pluginmanager.get_plugin("terminalreporter")
    report.write_line(f"{probe.num_cases} hostile cases ran against the real engine")


def test_issue_cases_and_the_field_sweep(probe: Probe) -> None:
    probe.sweep(issue_requests(probe.target) + sweep_requests(probe.target))


def test_hostile_requests(probe: Probe) -> None:
    target = probe.target
    requests = st.one_of(chat_requests(target), classify_requests(target), header_requests(target))
    probe.fuzz(requests, EXAMPLES)
