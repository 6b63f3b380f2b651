"""Issue 21's contract, fuzzed: hostile text and numbers in every field a client can fill
(bodies, paths, query strings, headers), against the gateway in tenants mode with the
engine test double (``tests/fake_engine.py``).

After every request the answer keeps the contract (``tests/contract.py``), ``/metrics``
still renders and shows no client text as a label, and the bystander tenant's series are
untouched; after each run the bystander still gets its answer, counted under the names
the operator made (``tests/probe.py``). Requests share one gateway, so what one leaves
behind (a poisoned label, a taken label slot) meets every later one.

Cases per fuzz test: ``GATEWAY_HOSTILE_EXAMPLES`` (default 100; e.g. 2000 on demand).
The seed is fixed (``derandomize``), so a failure repeats.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from gateway.config import Settings
from gateway.engine.types import GenerationChunk, GenerationParams
from gateway.server import create_app
from gateway.tenancy import hash_key
from tests.adapter_factory import FAKE_BASE, make_peft_folder
from tests.fake_engine import FakeEngine, ScriptedOutput
from tests.hostile_requests import (
    ANSWER,
    Target,
    admin_issue_requests,
    admin_requests,
    chat_requests,
    classify_requests,
    header_requests,
    issue_requests,
    response_format,
    sweep_requests,
)
from tests.probe import Bystander, Probe
from tests.unit.conftest import wait_for
from tests.unit.tenancy_setup import ADMIN, ALPHA, BETA, METRICS

EXAMPLES = int(os.environ.get("GATEWAY_HOSTILE_EXAMPLES", "100"))
BETA_ASKS = {"model": "tenant-b", "messages": [{"role": "user", "content": "hi"}],
             "response_format": response_format("intent_classification")}  # fmt: skip
BETA = Bystander(
    "beta", BETA, "/v1/chat/completions", BETA_ASKS,
    frozenset({("adapter", "tenant-b"), ("schema", "intent_classification")}),
)  # fmt: skip
OPERATOR_NAMES = frozenset({"alpha", "beta", "tenant-a", "tenant-b", "intent_classification"})


WIRE_INTS = range(-(2**63), 2**64)  # what vLLM's msgpack link to its engine core carries


class WireCheckedEngine(FakeEngine):
    """The double, plus the one check vLLM's front end makes on every request before its
    engine core sees it: msgpack serialisation, whose integers fit in 64 bits. On the real
    engine a schema holding 2**64 fails there, as a 500."""

    async def generate(self, params: GenerationParams) -> AsyncIterator[GenerationChunk]:
        pending: list[object] = [asdict(params)]
        while pending:
            node = pending.pop()
            if isinstance(node, dict):
                pending.extend(node.values())
            elif isinstance(node, list | tuple):
                pending.extend(node)
            elif isinstance(node, int) and node not in WIRE_INTS:
                raise OverflowError("can't serialize ints < -2**63 or > 2**64 - 1")
        async for chunk in super().generate(params):
            yield chunk


def archive(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    root = tmp_path_factory.mktemp("hostile")
    for name in ("tenant-a", "tenant-b"):
        make_peft_folder(root / "store" / name / "v1")
    tenants = root / "tenants.yaml"
    tenants.write_text(yaml.safe_dump({"tenants": [
        {"name": "alpha", "key_hashes": [hash_key(ALPHA)], "allowed_adapters": ["*"]},
        {"name": "beta", "key_hashes": [hash_key(BETA.key)], "allowed_adapters": ["tenant-b"]},
    ]}))  # fmt: skip
    settings = Settings(
        adapter_store=root / "store", adapters={"tenant-a": "v1", "tenant-b": "v1"},
        auth_mode="tenants", tenants_file=tenants, admin_key=ADMIN, metrics_key=METRICS,
        max_tokens_cap=100, default_max_tokens=50, max_model_len=1024, max_body_bytes=256_000,
    )  # fmt: skip
    engine = WireCheckedEngine(outputs=[ScriptedOutput(ANSWER)])  # valid for fuzzed schemas
    app = create_app(settings, lambda _: (engine, FAKE_BASE), exit_on_failure=False)
    upload = archive(make_peft_folder(root / "upload" / "v1"))
    target = Target(ALPHA, ADMIN, METRICS, "tenant-a", upload, wire=False)
    # a 500 must reach the assertions as an answer, not as an exception in the test
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/ready").status_code == 200, lambda: "not ready")
        probe = Probe(client, target, BETA, OPERATOR_NAMES)
        probe.bystander_asks()
        yield probe


def test_every_field_takes_each_kind_of_hostile_value(probe: Probe) -> None:
    """The issue's reproductions, then the sweep: long, surrogate and CRLF text and
    over-wide, infinite and NaN numbers in every chat and classify field, each on its own."""
    target = probe.target
    probe.sweep(issue_requests(target) + admin_issue_requests(target) + sweep_requests(target))


def test_hostile_chat_bodies(probe: Probe) -> None:
    probe.fuzz(chat_requests(probe.target), EXAMPLES)


def test_hostile_classify_bodies(probe: Probe) -> None:
    probe.fuzz(classify_requests(probe.target), EXAMPLES)


def test_hostile_admin_paths_and_queries(probe: Probe) -> None:
    probe.fuzz(admin_requests(probe.target), EXAMPLES)


def test_hostile_headers(probe: Probe) -> None:
    probe.fuzz(header_requests(probe.target), EXAMPLES)
