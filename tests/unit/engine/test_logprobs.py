"""Log-probabilities through the vLLM engine wrapper, without starting vLLM: the
requested ids reach ``SamplingParams``, and what comes back leaves as plain floats."""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

from gateway.engine.types import GenerationParams, TokenLogprobs
from gateway.engine.vllm_engine import sampling_params
from tests.fake_engine import FakeTokenizer
from tests.unit.engine.test_error_mapping import started_engine

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "`torch.jit.script_method` is deprecated", DeprecationWarning)
    from vllm.logprobs import Logprob


def params(**extra: Any) -> GenerationParams:
    return GenerationParams(request_id="r", prompt_token_ids=[1, 2, 3], max_tokens=1, **extra)


def test_the_requested_logprobs_reach_sampling_params() -> None:
    scoring = sampling_params(params(logprob_token_ids=(5, 9, 7)))
    assert scoring.logprob_token_ids == [5, 9, 7] and scoring.logprobs is None
    assert scoring.structured_outputs is None and scoring.max_tokens == 1
    sampled = sampling_params(params(logprobs=0))
    assert sampled.logprobs == 0 and sampled.logprob_token_ids is None
    plain = sampling_params(params())
    assert plain.logprobs is None and plain.logprob_token_ids is None


class ScriptedLLM:
    """Stands in for ``AsyncLLM``: one delta with one token and its logprob dict."""

    errored = False

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        async def outputs() -> Any:
            position = {  # vLLM's ranks for logprob_token_ids are meaningless: 1..n
                42: Logprob(-0.25, rank=1, decoded_token="b"),
                5: Logprob(-1.5, rank=2, decoded_token="x"),
                9: Logprob(-0.25, rank=3, decoded_token="b"),
            }
            completion = SimpleNamespace(
                text="b", token_ids=[42], logprobs=[position], finish_reason="length"
            )
            yield SimpleNamespace(outputs=[completion], finished=True)

        return outputs()


async def test_logprobs_leave_the_engine_as_floats() -> None:
    engine, _ = started_engine(RuntimeError("not raised: the LLM is replaced"))
    engine._llm = ScriptedLLM()
    chunks = [chunk async for chunk in engine.generate(params(logprob_token_ids=(5, 9)))]
    assert chunks[0].logprobs == [TokenLogprobs(42, "b", {42: -0.25, 5: -1.5, 9: -0.25})]
    assert chunks[0].finish_reason == "length"
    assert all(type(v) is float for v in chunks[0].logprobs[0].logprobs.values())


def test_decision_tokens_come_from_the_served_tokenizer() -> None:
    engine, _ = started_engine(RuntimeError("not raised: no generation"))
    engine._tokenizer = FakeTokenizer()
    tokens = engine.decision_tokens(("billing", "bank", "other"))
    assert [(t.text, t.token_id) for t in tokens] == [("AA", 1000), ("AB", 1001), ("AC", 1002)]
    assert engine.decision_tokens(("billing", "bank", "other")) is tokens  # computed once
    assert engine.encode_text("AB c") == [1001, ord(" "), ord("c")]
