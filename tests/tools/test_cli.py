"""``gateway-tools``: a mistake ends a tool's command with one line and exit status 2, as
``gateway`` does; nothing here starts a gateway or the engine."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway_tools.cli import build_parser, main


def _too_far(*args: object, **kwargs: object) -> None:
    raise AssertionError("the command went past the mistake")


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("gateway-tools: error: ") and err.count("\n") == 1, err
    return err.removeprefix("gateway-tools: error: ").strip()


def test_a_benchmark_against_an_unreachable_gateway(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway_tools.bench.consistency.main.run_all", _too_far)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    problem = fails(["bench", "consistency", "--url", url], capsys)
    assert problem.startswith(f"cannot reach a gateway at {url}: ")


def test_charts_of_an_adapter_never_evaluated(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    problem = fails(["eval", "charts", str(tmp_path)], capsys)
    assert problem.startswith(f"{tmp_path / 'eval_predictions.jsonl'}: not found")


def test_every_benchmark_has_its_verb() -> None:
    bench = build_parser().parse_args(["bench", "perf", "--rounds", "2"])
    assert bench.rounds == 2 and callable(bench.func)
    shots = build_parser().parse_args(["console", "screenshots", "--out", "x"])
    assert shots.out == "x"
