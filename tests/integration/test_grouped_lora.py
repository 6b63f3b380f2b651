"""The grouped CPU LoRA path changes speed, not answers: the base model and two adapters,
asked at once so that they share the engine's batches, give the same greedy outputs with
the path on and off (two real gateways, one after the other).

The unit tests (tests/unit/engine/test_grouped_lora.py) hold the ops to vLLM's within a
stated tolerance; this one shows that the plugin is installed where vLLM runs and that
greedy decoding with real adapters does not notice the difference.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.bench.launch import launch
from gateway.config import REPO_ROOT

pytestmark = pytest.mark.integration

ADAPTERS = {"demo": REPO_ROOT / "adapters" / "demo" / "v1",
            "banking77": REPO_ROOT / "adapters" / "banking77" / "v2"}  # fmt: skip
MODELS = ("base", *ADAPTERS)
PROMPTS = [
    "I was charged twice for the same purchase, can you help?",
    "My card has not arrived yet. It has been two weeks.",
    "How do I change the PIN of my card?",
    "Why was my transfer declined?",
]
SMALL_ENGINE = {"GATEWAY_MAX_MODEL_LEN": "1024", "GATEWAY_GPU_MEMORY_UTILIZATION": "0.05"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("grouped-lora") / "store"
    for name, source in ADAPTERS.items():
        shutil.copytree(source, store / name / source.name)
    return store


def ask(url: str, model: str, prompt: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}],
            "temperature": 0, "max_tokens": 48}  # fmt: skip
    res = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300)
    assert res.status_code == 200, res.text
    return res.json()["choices"][0]["message"]["content"]


def answers(store: Path, log: Path, grouped: bool) -> dict[tuple[str, str], str]:
    """Every (model, prompt) pair sent at once, so base and adapter tokens share batches."""
    versions = {name: source.name for name, source in ADAPTERS.items()}
    env = {**SMALL_ENGINE, "GATEWAY_GROUPED_LORA": "1" if grouped else "0"}
    jobs = [(model, prompt) for prompt in PROMPTS for model in MODELS]
    with (
        launch(log, adapters=versions, store=store, env=env, timeout_s=600) as gw,
        ThreadPoolExecutor(max_workers=len(jobs)) as pool,
    ):
        return dict(zip(jobs, pool.map(lambda job: ask(gw.url, *job), jobs), strict=True))


def test_base_and_two_adapters_answer_alike_with_the_grouped_path_on_and_off(
    store: Path, tmp_path: Path
) -> None:
    on = answers(store, tmp_path / "on.log", grouped=True)
    off = answers(store, tmp_path / "off.log", grouped=False)
    assert "grouped CPU LoRA path installed" in (tmp_path / "on.log").read_text()
    off_log = (tmp_path / "off.log").read_text()
    assert "grouped CPU LoRA path: off" in off_log
    assert "grouped CPU LoRA path installed" not in off_log
    for adapter in ADAPTERS:  # else equal answers would not show the adapters were applied
        assert any(on[(adapter, p)] != on[("base", p)] for p in PROMPTS), adapter
    assert on == off
