"""The contract every answer keeps, whatever the request (issue 21): no 5xx but the
documented typed ones, OpenAI-shaped errors with a code from the docs' table, a bounded
echo of client input, and a ``/metrics`` page whose labels carry no client text.

Shared by the hostile fuzzing against the engine test double and against the real engine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.common.names import is_valid_name
from gateway.config import REPO_ROOT
from tests.hostile import Case

TYPED_5XX = {
    (502, "output_invalid"),
    (502, "output_truncated"),
    (503, "engine_unavailable"),
    (503, "overloaded"),
    (503, "adapter_unavailable"),
}
MAX_ERROR_BYTES = 4096  # an error body quotes at most an excerpt of what the client sent
MAX_HEADER_BYTES = 4096
# No run of client text this long comes back: the gateway quotes excerpts (64 characters
# of a name, 300 of a third-party validation message), never the whole input. Quoting
# escapes: a backslash quoted twice (by jsonschema, then by the excerpt) is four.
ECHO_CHARS = 1024
# Settings.max_header_bytes' default: a longer request head may be refused by the HTTP
# server itself (uvicorn's plain 400, before any handler), as docs/configuration.md says.
MAX_HEAD_BYTES = 16384
# The gateway's own label values (gateway/observability/metrics.py, schema_names.py): a
# client that happens to send one of these words has not put it on the page.
GATEWAY_WORDS = frozenset({"base", "inline", "invalid", "none", "open", "other", "unauthenticated"})
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def documented_errors() -> set[tuple[int, str]]:
    """(status, code) pairs of the error table in docs/api.md."""
    table = (REPO_ROOT / "docs" / "api.md").read_text()
    return {(int(s), c) for s, c in re.findall(r"^\| (\d{3}) \| `(\w+)` \|", table, re.M)}


def check_answer(response: httpx.Response, case: Case, documented: set[tuple[int, str]]) -> None:
    status, kind = response.status_code, response.headers.get("content-type", "")
    where = f"{status} for {case}\n-> {response.text[:600]!r}"
    if case.head_bytes > MAX_HEAD_BYTES and status == 400 and "json" not in kind:
        return  # the HTTP server refused the head before the gateway saw it
    header_bytes = sum(len(k) + len(v) for k, v in response.headers.raw)
    assert header_bytes < MAX_HEADER_BYTES, f"{header_bytes} bytes of headers: {where}"
    if not case.authorized:
        assert status in (401, 413), f"the key is checked first: {where}"
    if 200 <= status < 300:
        accepted = [name for name in case.names if not is_valid_name(name)]
        assert not accepted, f"took {accepted!r} as names: {where}"
    if kind.startswith("text/event-stream"):
        assert status == 200, where
        for line in response.text.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                event = json.loads(line[len("data: ") :])
                if "error" in event:
                    _check_error(event, None, documented, where)
    elif status >= 400:
        assert len(response.content) < MAX_ERROR_BYTES, f"{len(response.content)} B: {where}"
        error = _check_error(response.json(), status, documented, where)
        said = " ".join(str(error.get(key)) for key in ("message", "param", "hint"))
        echoed = [t for t in case.texts if len(t) > ECHO_CHARS and t[:ECHO_CHARS] in said]
        assert not echoed, f"echoed over {ECHO_CHARS} characters of client text: {where}"
    elif "json" in kind:
        response.json()


def _check_error(
    body: object, status: int | None, documented: set[tuple[int, str]], where: str
) -> dict:
    assert isinstance(body, dict) and set(body) == {"error"}, where
    error = body["error"]
    assert isinstance(error.get("message"), str) and isinstance(error.get("type"), str), where
    assert error.get("param") is None or isinstance(error["param"], str), where
    assert isinstance(error.get("retryable"), bool), where
    code = error.get("code")
    statuses = {s for s, c in documented if c == code} if status is None else {status}
    assert statuses, f"{code!r} is not in docs/api.md's error table: {where}"
    for answered in statuses:
        assert (answered, code) in documented, f"{code!r} not documented for {answered}: {where}"
        assert answered < 500 or (answered, code) in TYPED_5XX, f"a 5xx from client input: {where}"
    return error


def parse_metrics(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def client_labels(samples: Samples, client_texts: Iterable[str]) -> set[tuple[str, str, str]]:
    """(metric, label, value) where a label value is text a client sent (of 3 characters
    or more: shorter ones such as ``1`` are label values by coincidence)."""
    sent = {text for text in client_texts if len(text) >= 3} - GATEWAY_WORDS
    return {
        (name, label, value) for name, labels in samples for label, value in labels if value in sent
    }


def of_tenant(samples: Samples, tenant: str) -> Samples:
    return {key: v for key, v in samples.items() if ("tenant", tenant) in key[1]}
