"""``gateway bench bases``: ratios, the report from saved results, option mistakes, and one
run driven against an HTTP test double (no gateway, no engine, no checkpoint)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.common.usage import UsageError
from gateway.config import REPO_ROOT, Settings
from gateway.models import ModelError, ModelInfo
from gateway_tools.bench.bases import report
from gateway_tools.bench.bases import run as bases_run
from gateway_tools.bench.bases.main import run
from gateway_tools.bench.bases.run import accuracy_sample, checkpoint_bytes
from gateway_tools.cli import build_parser, main
from gateway_tools.launch import LaunchError, RunningGateway


def _cell(rps: float, tps: float, p50: float, p95: float, rss: float) -> dict[str, Any]:
    return {"requests_per_s": rps, "output_tokens_per_s": tps, "latency_p50_ms": p50,
            "latency_p95_ms": p95, "errors": 0, "rss_mb": rss}  # fmt: skip


def saved_run() -> dict[str, Any]:
    """A run as ``results.json`` holds it: bf16 and w4a16 measured, w8a8 failed to start."""
    return {
        "command": "gateway bench bases",
        "machine": {"platform": "Linux", "cpus": 2},
        "reference": "bf16",
        "cells": ["base-c1", "adapter-c1"],
        "workload": {"schema": "77-label intent", "prompts": 64, "adapter": "banking77/v2",
                     "max_tokens": 64, "requests": 48, "concurrency": [1]},
        "accuracy_sample": {"data": "data/banking77/test.csv", "items": 4, "seed": 0,
                            "concurrency": 16},
        "variants": {
            "bf16": {
                "model": {"path": "cache/bf16", "variant": "bf16"}, "checkpoint_bytes": 256 * 2**20,
                "served": {"id": "base", "object": "model", "root": "SmolLM2"},
                "ready_s": 30.0, "rss_after_warmup_mb": 8000.0,
                "cells": {"base-c1": _cell(1.0, 25.0, 1000, 1200, 8100),
                          "adapter-c1": _cell(0.8, 20.0, 1250, 1500, 8200)},
                "accuracy": {"accuracy": 0.8, "macro_f1": 0.75, "schema_valid_rate": 1.0,
                             "errors": {}},
                "predicted": ["a", "b", "c", None],
            },
            "w4a16": {
                "model": {"path": "cache/w4a16", "variant": "w4a16-g32"},
                "checkpoint_bytes": 112 * 2**20,
                "served": {"id": "base", "object": "model", "root": "SmolLM2", "parent": None,
                           "quantization": {"method": "compressed-tensors", "bits": 4}},
                "ready_s": 28.0, "rss_after_warmup_mb": 7800.0,
                "cells": {"base-c1": _cell(0.9, 22.5, 1100, 1320, 7900),
                          "adapter-c1": _cell(0.72, 18.0, 1375, 1650, 7950)},
                "accuracy": {"accuracy": 0.775, "macro_f1": 0.7, "schema_valid_rate": 1.0,
                             "errors": {}},
                "predicted": ["a", "x", "c", None],
            },
            "w8a8": {"error": "LaunchError: gateway exited (1):\nNoneType has no device"},
        },
    }  # fmt: skip


def test_ratios_are_against_the_reference_variant_of_the_same_run() -> None:
    cmp = report.comparisons(saved_run())
    w4 = cmp["w4a16"]
    assert w4["checkpoint"] == round(112 / 256, 3)
    assert w4["rss_after_warmup"] == 0.975
    assert w4["rss_peak"] == round(7950 / 8200, 3)  # the largest cell peak of each
    assert w4["cells"]["base-c1"] == {"requests_per_s": 0.9, "output_tokens_per_s": 0.9,
                                      "latency_p50_ms": 1.1, "latency_p95_ms": 1.1}  # fmt: skip
    assert w4["cells"]["adapter-c1"]["latency_p95_ms"] == 1.1
    assert w4["accuracy_points"] == -2.5
    assert w4["agreement"] == 0.75  # a, c and the item neither could label
    assert cmp["bf16"]["agreement"] == 1.0
    assert cmp["bf16"]["checkpoint"] == 1.0 and cmp["bf16"]["accuracy_points"] == 0.0
    failed = cmp["w8a8"]
    assert failed["checkpoint"] is None and failed["accuracy_points"] is None
    assert set(failed["cells"]["base-c1"].values()) == {None}


def test_the_report_is_rewritten_from_saved_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "results.json").write_text(json.dumps(saved_run()))
    assert main(["bench", "bases", "--report-only", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| w4a16 | 112.0 | 0.44 | 7800 | 0.975 | 7950 | 0.970 |" in text
    assert (
        "| base-c1 | w4a16 | 0.90 | 0.900 | 22.5 | 0.900 | 1100 | 1.100 | 1320 | 1.100 | 0 |"
        in text
    )
    assert "| w4a16 | 77.5% | -2.5 | 75.0% | 0.700 | 100.0% | none |" in text
    assert "| w8a8 | n/a | n/a | n/a | n/a | n/a | n/a |" in text
    served = 'root=SmolLM2, quantization.method="compressed-tensors", quantization.bits=4'
    assert f"| w4a16 | `cache/w4a16` (w4a16-g32) | {served} | 28.0 |" in text
    assert "| w8a8 | n/a | n/a |" in text  # not measured is n/a, never 0
    assert "## Failed" in text and "NoneType has no device" in text
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"
    assert "report.md" in capsys.readouterr().out


def test_report_only_without_results_is_a_mistake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "bases", "--report-only", str(tmp_path)]) == 2
    assert "results.json does not exist" in capsys.readouterr().err


def test_the_accuracy_sample_is_seeded_and_spread_over_the_test_split() -> None:
    items = accuracy_sample(400, 0)
    assert items == accuracy_sample(400, 0)
    assert [i.index for i in items] == list(range(400))
    assert len({i.texts["original"] for i in items}) == 400
    assert len({i.gold for i in items}) > 60  # 77 labels, 40 items each
    assert [i.texts for i in accuracy_sample(5, 1)] != [i.texts for i in items[:5]]
    with pytest.raises(UsageError, match="has 3080 items"):
        accuracy_sample(3081, 0)


def test_checkpoint_size_counts_the_weight_files_only(tmp_path: Path) -> None:
    (tmp_path / "model-00001.safetensors").write_bytes(b"x" * 100)
    (tmp_path / "model-00002.safetensors").write_bytes(b"x" * 50)
    (tmp_path / "tokenizer.json").write_bytes(b"x" * 1000)
    assert checkpoint_bytes(tmp_path) == 150
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"no \*\.safetensors"):
        checkpoint_bytes(tmp_path / "empty")


def _too_far(*args: object, **kwargs: object) -> None:
    raise AssertionError("the command went past the mistake")


@pytest.mark.parametrize(
    ("argv", "env", "problem"),
    [
        (["--variants", "fp4"], {}, "--variants fp4: settings: base_variant: "),
        (["--variants", "bf16", "w8a8", "bf16"], {}, "--variants names bf16 more than once"),
        (["--requests", "0"], {}, "--requests must be at least 1, got 0"),
        (["--concurrency", "1", "0"], {}, "--concurrency must be at least 1, got 0"),
        ([], {"GATEWAY_MODEL_DIR": "/models/mine"}, "model_dir is set (/models/mine)"),
    ],
)
def test_mistakes_are_told_before_anything_starts(
    argv: list[str],
    env: dict[str, str],
    problem: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(bases_run, "resolve_model", _too_far)
    monkeypatch.setattr(bases_run, "launch", _too_far)
    assert main(["bench", "bases", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gateway-tools: error: ") and err.count("\n") == 1, err
    assert problem in err


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["bench", "bases", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--accuracy-items" in out and "--report-only" in out and "bf16 w4a16 w8a8" in out


GOLD = {item.texts["original"]: item.gold for item in accuracy_sample(6, 0)}


def fake_gateway(seen: list[dict[str, Any]]) -> httpx.MockTransport:
    """The gateway's answers: a model card, a streamed chat completion, a classification
    that is always right."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            card = {"id": "base", "object": "model", "created": 1, "root": "m", "bits": 4}
            return httpx.Response(200, json={"object": "list", "data": [card]})
        body = json.loads(request.content)
        seen.append({"path": request.url.path, **body})
        if request.url.path == "/v1/classify":
            return httpx.Response(200, json={"intent": GOLD[body["text"]], "confidence": 0.9,
                                             "requires_human_agent": False,
                                             "usage": {"prompt_tokens": 9}})  # fmt: skip
        events = [{"choices": [{"delta": {"content": "{}"}}]},
                  {"choices": [], "usage": {"completion_tokens": 5}}]  # fmt: skip
        sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=sse, headers={"content-type": "text/event-stream"})

    return httpx.MockTransport(handle)


@pytest.fixture
def stubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Checkpoints in tmp_path, ``launch`` yielding this process as the gateway (w8a8
    fails to start), HTTP answered by ``fake_gateway``, every save of results.json kept."""
    state: dict[str, Any] = {"launched": [], "seen": [], "saves": []}

    def resolve(model_dir: Path | None, cache_dir: Path, variant: str) -> ModelInfo:
        folder = tmp_path / "cache" / variant
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.safetensors").write_bytes(b"w" * (100 if variant == "bf16" else 40))
        return ModelInfo("m", folder, "f" * 64, variant=variant)

    @contextmanager
    def launch(log: Path, **kwargs: Any) -> Iterator[RunningGateway]:
        state["launched"].append(kwargs)
        if kwargs["env"]["GATEWAY_BASE_VARIANT"] == "w8a8":
            raise LaunchError("gateway exited (1):\n'NoneType' object has no attribute 'device'")
        yield RunningGateway("http://gateway.test", log, os.getpid(), 2.0, False)

    real_client = httpx.AsyncClient
    transport = fake_gateway(state["seen"])
    monkeypatch.setattr(bases_run, "resolve_model", resolve)
    monkeypatch.setattr(bases_run, "launch", launch)
    monkeypatch.setattr(httpx, "AsyncClient", lambda **kw: real_client(transport=transport, **kw))

    def keep(path: Path, value: dict[str, Any]) -> None:
        state["saves"].append(json.loads(json.dumps(value)))
        path.write_text(json.dumps(value))

    monkeypatch.setattr("gateway_tools.bench.bases.main.write_json_atomic", keep)
    return state


def test_each_variant_is_served_measured_and_saved_cell_by_cell(
    tmp_path: Path, stubbed: dict[str, Any]
) -> None:
    argv = ["bench", "bases", "--variants", "bf16", "w8a8", "w4a16", "--concurrency", "1", "2",
            "--requests", "3", "--prompts", "2", "--accuracy-items", "6", "--out",
            str(tmp_path / "out")]  # fmt: skip
    results = run(build_parser().parse_args(argv), Settings())

    envs = [launched["env"] for launched in stubbed["launched"]]
    assert [env["GATEWAY_BASE_VARIANT"] for env in envs] == ["bf16", "w8a8", "w4a16"]
    assert all(env["GATEWAY_QUANTIZATION"] == "none" for env in envs)
    assert stubbed["launched"][0]["adapters"] == {"banking77": "v2"}
    assert stubbed["launched"][0]["store"] == REPO_ROOT / "adapters"

    chats = [s for s in stubbed["seen"] if s["path"] == "/v1/chat/completions"]
    assert all(c["response_format"]["type"] == "json_schema" for c in chats)  # schema on
    per_variant = 2 + 2 * (3 + 3)  # warm-up per arm, then 2 arms x 2 cells x 3 requests
    assert len(chats) == 2 * per_variant
    assert {c["model"] for c in chats} == {"base", "banking77"}
    bf16, w4 = chats[:per_variant], chats[per_variant:]
    assert [c["messages"] for c in bf16] == [c["messages"] for c in w4]  # same prompts
    classified = [s["text"] for s in stubbed["seen"] if s["path"] == "/v1/classify"]
    assert classified == list(GOLD) * 2  # the same items for every variant

    measured = results["variants"]["w4a16"]
    assert set(measured["cells"]) == {"base-c1", "base-c2", "adapter-c1", "adapter-c2"}
    assert measured["cells"]["adapter-c2"]["requests"] == 3
    assert measured["cells"]["adapter-c2"]["output_tokens_per_s"] > 0
    assert measured["checkpoint_bytes"] == 40 and measured["rss_after_warmup_mb"] > 0
    assert measured["served"]["bits"] == 4 and measured["model"]["variant"] == "w4a16"
    assert measured["accuracy"]["accuracy"] == 1.0 and len(measured["predicted"]) == 6
    assert "NoneType" in results["variants"]["w8a8"]["error"]
    assert report.comparisons(results)["w4a16"]["checkpoint"] == 0.4

    cells_saved = [
        sum(len(v.get("cells", {})) for v in save["variants"].values()) for save in stubbed["saves"]
    ]
    assert set(range(1, 9)) <= set(cells_saved)  # saved after every one of the 8 cells
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == results
    assert "## Failed" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "chart.png").exists()
