"""The grouped CPU LoRA path changes speed, not answers: the base model and two adapters,
asked at once so that they share the engine's batches, answer alike with the path on and
off (two real gateways, one after the other): the same base-model chat answers (base
tokens get no LoRA term either way), and from both adapters' ``/v1/classify`` the same
labels with probabilities within ``PROB_TOL``.

Free-text generations with an adapter are not compared token for token: the grouped
products add in another order, and in bf16 a near-tie some tokens in can flip (seen
with banking77/v2 after 60 to 90 characters and with demo/v1 after ~40, on free text
these adapters were never trained to write); the probabilities bound that drift (demo/v1's
confidence moved by 0.028 in one run).

With the path on, decode steps go through the C kernel (``kernel.c``) that the package's
install built (``setup.py``); the engine loads it from the package directory, and
``/ready`` names it.

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

from gateway.config import REPO_ROOT
from gateway_tools.launch import launch

pytestmark = pytest.mark.integration

ADAPTERS = {"demo": REPO_ROOT / "adapters" / "demo" / "v1",
            "banking77": REPO_ROOT / "adapters" / "banking77" / "v3"}  # fmt: skip
CHAT_MODELS = ("base",)
# bf16 logits carry ~3 significant digits (±0.06 on a logit of 20), ~1.5% of a
# probability per token; demo/v1's confidence multiplies about three of them
PROB_TOL = 0.05
PROMPTS = [
    "I was charged twice for the same purchase, can you help?",
    "My card has not arrived yet. It has been two weeks.",
    "How do I change the PIN of my card?",
    "Why was my transfer declined?",
]
SMALL_ENGINE = {"GATEWAY_MAX_MODEL_LEN": "1024", "GATEWAY_MAX_TOKENS_CAP": "256",
                "GATEWAY_KV_CACHE_GIB": "0.25"}  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("grouped-lora") / "store"
    for name, source in ADAPTERS.items():
        shutil.copytree(source, store / name / source.name)
    return store


def chat(url: str, model: str, prompt: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}],
            "temperature": 0, "max_tokens": 16}  # fmt: skip
    res = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300)
    assert res.status_code == 200, res.text
    return res.json()["choices"][0]["message"]["content"]


def classify(url: str, adapter: str, prompt: str) -> dict[str, float]:
    """Every label's probability (banking77/v3), or the answered one's (demo/v1, a legacy
    JSON adapter, which has no runners-up)."""
    body = {"adapter": adapter, "text": prompt, **({"top_k": 77} if adapter == "banking77" else {})}
    res = httpx.post(f"{url}/v1/classify", json=body, timeout=300)
    assert res.status_code == 200, res.text
    value = res.json()
    if value["top_k"] is None:
        return {value["intent"]: value["confidence"]}
    return {item["intent"]: item["probability"] for item in value["top_k"]}


def answers(
    store: Path, log: Path, grouped: bool
) -> tuple[dict[tuple[str, str], object], dict[str, object]]:
    """Every (model, prompt) pair sent at once, so base and adapter tokens share batches;
    and what ``/ready`` said."""
    versions = {name: source.name for name, source in ADAPTERS.items()}
    env = {**SMALL_ENGINE, "GATEWAY_GROUPED_LORA": "1" if grouped else "0"}
    jobs = [(model, prompt) for prompt in PROMPTS for model in (*CHAT_MODELS, *ADAPTERS)]

    def run(job: tuple[str, str]) -> object:
        model, prompt = job
        return chat(gw.url, model, prompt) if model == "base" else classify(gw.url, *job)

    with (
        launch(log, adapters=versions, store=store, env=env, timeout_s=600) as gw,
        ThreadPoolExecutor(max_workers=len(jobs)) as pool,
    ):
        ready = httpx.get(f"{gw.url}/ready", timeout=30).json()
        return dict(zip(jobs, pool.map(run, jobs), strict=True)), ready


def test_base_and_two_adapters_answer_alike_with_the_grouped_path_on_and_off(
    store: Path, tmp_path: Path
) -> None:
    on, ready_on = answers(store, tmp_path / "on.log", grouped=True)
    off, ready_off = answers(store, tmp_path / "off.log", grouped=False)
    on_log = (tmp_path / "on.log").read_text()
    assert "grouped CPU LoRA path installed" in on_log
    kernel = ready_on["lora"]["kernel"]  # type: ignore[index]
    assert kernel in ("shipped-avx512f", "shipped-avx2", "shipped-baseline"), ready_on
    assert f"LoRA path in the engine process: grouped, C decode kernel: {kernel}" in on_log
    off_log = (tmp_path / "off.log").read_text()
    assert "grouped CPU LoRA path: off" in off_log
    assert "grouped CPU LoRA path installed" not in off_log
    assert "LoRA path in the engine process: vLLM's own, C decode kernel: none" in off_log
    assert ready_off["lora"] == {"path": "vllm", "kernel": "none"}
    for prompt in PROMPTS:
        assert on[("base", prompt)] == off[("base", prompt)], prompt
        for adapter in ADAPTERS:
            probs_on, probs_off = on[(adapter, prompt)], off[(adapter, prompt)]
            assert isinstance(probs_on, dict) and isinstance(probs_off, dict)
            assert probs_on.keys() == probs_off.keys(), (adapter, prompt)  # the same labels
            worst = max(abs(probs_on[k] - probs_off[k]) for k in probs_on)
            assert worst <= PROB_TOL, (adapter, prompt, worst)
    assert len(on[("banking77", PROMPTS[0])]) == 77  # type: ignore[arg-type]
