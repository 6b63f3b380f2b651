"""A gateway under hostile input, watched: every answer is checked against the contract
(``tests/contract.py``), then ``/metrics`` and a bystander tenant are checked after it.

The same probe drives the gateway with the engine test double (a ``TestClient``) and the
real gateway (an ``httpx.Client`` on its URL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.contract import (
    Samples,
    check_answer,
    client_labels,
    documented_errors,
    of_tenant,
    parse_metrics,
)
from tests.hostile import Case
from tests.hostile_requests import INLINE_NAME, Target


@dataclass(frozen=True)
class Bystander:
    """A tenant that sends nothing hostile: what it sees must not change."""

    name: str
    key: str
    path: str  # its own request, which must keep succeeding
    body: dict[str, Any]
    labels: frozenset[tuple[str, str]]  # its requests are counted under these, never `other`

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Probe:
    client: httpx.Client
    target: Target
    bystander: Bystander
    operator_names: frozenset[str]  # may be label values: tenants, adapters, named schemas
    documented: set[tuple[int, str]] = field(default_factory=documented_errors)
    sent: set[str] = field(default_factory=lambda: {INLINE_NAME})  # client text so far
    series: Samples = field(default_factory=dict)  # the bystander's, as it left them
    models: list[str] | None = None  # what the bystander was shown the first time
    num_cases: int = 0

    def fuzz(self, requests: st.SearchStrategy[Case], examples: int) -> None:
        """``examples`` drawn requests (fixed seed), each answered and watched."""

        @settings(
            max_examples=examples, derandomize=True, database=None, deadline=None,
            suppress_health_check=list(HealthCheck), print_blob=False,
        )  # fmt: skip
        @given(requests)
        def run(case: Case) -> None:
            self.answer(case)
            self.watch(case)

        run()
        self.bystander_asks()

    def sweep(self, cases: list[Case]) -> None:
        """Every case answered, then watched; all that broke is listed, not only the first."""
        problems = []
        for check, subject in [(self.answer, case) for case in cases] + [(self.watch, "sweep")]:
            try:
                check(subject)
            except AssertionError as exc:
                problems.append(str(exc)[:500])
        assert not problems, f"{len(problems)} broke the contract:\n" + "\n".join(problems)
        self.bystander_asks()

    def answer(self, case: Case) -> None:
        """The request is answered, within the contract."""
        self.num_cases += 1
        self.sent |= case.texts - self.operator_names
        content = iter([case.content]) if case.chunked and case.content else case.content
        try:
            response = self.client.request(
                case.method, case.url, content=content, headers=list(case.headers)
            )
        except httpx.TransportError as exc:
            raise AssertionError(f"no HTTP answer: {exc!r} for {case}") from exc
        check_answer(response, case, self.documented)
        if case.url == "/metrics" and response.status_code == 200:  # only its own key opens it
            assert self.target.metrics_key.encode() in dict(case.headers)["Authorization"], case

    def watch(self, after: object) -> None:
        """/metrics renders, shows no client text, and the bystander's series are as it
        left them."""
        samples = self.scrape()
        leaked = sorted(client_labels(samples, self.sent))
        assert not leaked, f"client text as metric labels: {leaked[:3]!r:.600} after {after}"
        mine = of_tenant(samples, self.bystander.name)
        assert mine == self.series, f"{self.bystander.name}'s series changed by {after}"

    def scrape(self) -> Samples:
        headers = {"Authorization": f"Bearer {self.target.metrics_key}"}
        response = self.client.get("/metrics", headers=headers)
        assert response.status_code == 200, response.text[:600]
        return parse_metrics(response.text)

    def bystander_asks(self) -> None:
        """The bystander is served, shown the same models, and counted under its own
        labels, none folded into ``other``."""
        who = self.bystander
        response = self.client.post(who.path, json=who.body, headers=who.headers)
        assert response.status_code == 200, response.text
        self.series = of_tenant(self.scrape(), who.name)
        counted = [set(labels) for name, labels in self.series if name == "gateway_requests_total"]
        assert any(who.labels <= labels for labels in counted), counted
        folded = [labels for _, labels in self.series if "other" in dict(labels).values()]
        assert not folded, folded
        models = self.client.get("/v1/models", headers=who.headers)
        assert models.status_code == 200, models.text
        shown = sorted(card["id"] for card in models.json()["data"])
        self.models = self.models or shown
        assert shown == self.models
