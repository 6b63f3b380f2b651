"""The connection guard's books: caps per listener and per client address, the series
they feed, and a log that says what happened without letting an attack flood it."""

from __future__ import annotations

import logging

import pytest

from gateway.cli.connections import (
    CLIENT_CAP,
    CONNECTION_CAP,
    HEAD_TIMEOUT,
    OPERATOR,
    PUBLIC,
    ConnectionGuard,
    ConnectionLimits,
    DropLog,
    QuietRepeats,
)


def guard(max_connections: int = 4, max_per_client: int = 2, operator: int = 2) -> ConnectionGuard:
    limits = ConnectionLimits(max_connections, max_per_client, 10.0, 60.0, operator)
    return ConnectionGuard(limits)


def sample(g: ConnectionGuard, name: str, **labels: str) -> float | None:
    return g.registry.get_sample_value(name, labels)


def test_one_address_stops_at_its_own_cap_and_others_still_get_in() -> None:
    g = guard()
    assert [g.admit(PUBLIC, "10.0.0.1") for _ in range(3)] == [None, None, CLIENT_CAP]
    assert g.admit(PUBLIC, "10.0.0.2") is None
    assert g.open[PUBLIC] == 3
    assert sample(g, "gateway_connections_dropped_total", listener=PUBLIC, reason=CLIENT_CAP) == 1
    assert sample(g, "gateway_connections_open", listener=PUBLIC) == 3


def test_the_overall_cap_refuses_everyone_until_a_slot_is_released() -> None:
    g = guard(max_connections=3, max_per_client=0)  # 0: no per-address cap
    assert [g.admit(PUBLIC, "10.0.0.1") for _ in range(4)] == [None, None, None, CONNECTION_CAP]
    assert g.admit(PUBLIC, "10.0.0.9") == CONNECTION_CAP
    g.release(PUBLIC, "10.0.0.1")
    assert g.admit(PUBLIC, "10.0.0.9") is None
    assert sample(g, "gateway_connections_dropped_total", listener=PUBLIC,
                  reason=CONNECTION_CAP) == 2  # fmt: skip


def test_the_operator_listener_has_slots_of_its_own() -> None:
    g = guard(max_connections=1, max_per_client=1, operator=2)
    assert g.admit(PUBLIC, "10.0.0.1") is None
    assert g.admit(PUBLIC, "10.0.0.2") == CONNECTION_CAP  # public full
    # the operator listener: its own cap, no per-address one (a scraper may hold several)
    assert [g.admit(OPERATOR, "10.0.0.1") for _ in range(3)] == [None, None, CONNECTION_CAP]
    assert sample(g, "gateway_connections_limit", listener=OPERATOR) == 2
    assert sample(g, "gateway_connections_open", listener=OPERATOR) == 2


def test_released_addresses_are_forgotten() -> None:
    """The per-address table holds only addresses with open connections, so an attacker
    cycling through addresses cannot grow it."""
    g = guard(max_connections=100, max_per_client=5)
    for n in range(50):
        assert g.admit(PUBLIC, f"10.0.{n}.1") is None
        g.release(PUBLIC, f"10.0.{n}.1")
    assert g.per_client == {}
    assert g.open[PUBLIC] == 0


def test_listener_of_knows_the_operator_port() -> None:
    g = guard()
    g.operator_ports.add(9101)
    assert (g.listener_of(9101), g.listener_of(8000), g.listener_of(None)) == (
        OPERATOR, PUBLIC, PUBLIC,
    )  # fmt: skip


def test_every_series_exists_from_the_start_with_bounded_labels() -> None:
    g = guard()
    dropped = [s for m in g.registry.collect() if m.name == "gateway_connections_dropped"
               for s in m.samples if s.name.endswith("_total")]  # fmt: skip
    assert len(dropped) == 8  # 2 listeners x 4 reasons, all at zero; nothing else ever
    assert {s.value for s in dropped} == {0.0}


def test_drop_log_says_it_once_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    drops = DropLog(interval_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="gateway.connections"):
        logged = [drops.note(HEAD_TIMEOUT, f"closed client {i}") for i in range(5)]
        assert drops.note(CLIENT_CAP, "refused 10.0.0.1")  # another reason: its own line
        now[0] += 10
        assert drops.note(HEAD_TIMEOUT, "closed client 5")
    assert logged == [True, False, False, False, False]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "head timeout: closed client 0",
        "client cap: refused 10.0.0.1",
        "head timeout: closed client 5; 4 more since the last such line",
    ]


def test_uvicorns_per_connection_warnings_pass_once_per_interval() -> None:
    now = [0.0]
    quiet = QuietRepeats(interval_s=10, clock=lambda: now[0])

    def record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", level, __file__, 1, msg, None, None)

    invalid = "Invalid HTTP request received."
    assert [quiet.filter(record(invalid)) for _ in range(3)] == [True, False, False]
    assert quiet.filter(record("Unsupported upgrade request."))  # another message
    assert quiet.filter(record("Started server process", logging.INFO))  # info passes
    now[0] += 10
    assert quiet.filter(record(invalid))
