"""The one chat renderer: the end token comes from the template, and training's
prompt + answer is token for token the conversation the model is served.

The tokenizers are built here, offline: one token per character plus each
template's special tokens, so every id is predictable and nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from gateway.common.prompts import (
    MAX_DECISION_LABELS,
    ChatTemplateError,
    DecisionToken,
    DecisionTokenError,
    classify_messages,
    decision_tokens,
    default_system_prompt,
    end_of_turn,
    label_system_prompt,
    render_answer,
    render_prompt,
)

CHATML = (  # SmolLM2-135M-Instruct's template, as shipped
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
GEMMA = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
MISTRAL = (  # no generation prompt; an assistant turn ends with the eos token
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
    "[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
OPEN_ENDED = (  # closes no turn at all: only the eos token can end an answer
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
TEMPLATES = {
    "chatml": (CHATML, ["<|im_start|>", "<|im_end|>"], "<|im_end|>"),
    "llama3": (LLAMA3, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|eot_id|>"),
    "gemma": (GEMMA, ["<start_of_turn>", "<end_of_turn>"], "<end_of_turn>"),
    "mistral": (MISTRAL, [], "</s>"),
}
ANSWER = '{"intent":"billing","confidence":0.9,"requires_human_agent":false}'
USER = [{"role": "user", "content": "I was charged twice"}]


def char_tokenizer(
    template: str, specials: list[str], eos: str | None = "</s>"
) -> PreTrainedTokenizerFast:
    alphabet = [chr(i) for i in range(32, 127)] + ["\n"]
    model = WordLevel({c: i for i, c in enumerate([*alphabet, "<unk>"])}, unk_token="<unk>")
    core = Tokenizer(model)
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(["<s>", *([eos] if eos else []), *specials])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token=eos, unk_token="<unk>",
        chat_template=template,
    )  # fmt: skip


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_end_token_is_the_templates(name: str) -> None:
    template, specials, expected = TEMPLATES[name]
    tokenizer = char_tokenizer(template, specials)
    assert end_of_turn(tokenizer) == expected
    answer = render_answer(tokenizer, ANSWER)
    assert answer[-1] == tokenizer.convert_tokens_to_ids(expected)
    assert tokenizer.decode(answer) == ANSWER + expected


@pytest.mark.parametrize("name", TEMPLATES)
def test_prompt_plus_answer_is_the_served_conversation(name: str) -> None:
    """What training feeds the model is the prompt serving renders, then the answer."""
    template, specials, _ = TEMPLATES[name]
    tokenizer = char_tokenizer(template, specials)
    whole = tokenizer.apply_chat_template(
        [*USER, {"role": "assistant", "content": ANSWER}], tokenize=False
    )
    expected = tokenizer(whole.rstrip(), add_special_tokens=False)["input_ids"]
    assert render_prompt(tokenizer, USER) + render_answer(tokenizer, ANSWER) == expected


def test_a_template_that_closes_no_turn_ends_with_eos() -> None:
    assert end_of_turn(char_tokenizer(OPEN_ENDED, [])) == "</s>"
    with pytest.raises(ChatTemplateError, match="no end-of-turn token"):
        end_of_turn(char_tokenizer(OPEN_ENDED, [], eos=None))


def test_the_classify_prompt_renders_in_chatml() -> None:
    tokenizer = char_tokenizer(CHATML, ["<|im_start|>", "<|im_end|>"])
    system = default_system_prompt(("billing", "other"))
    prompt = tokenizer.decode(render_prompt(tokenizer, classify_messages(system, "Hi")))
    assert prompt == (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "intent (one of: billing, other)" in system


def test_classify_text_is_whitespace_normalised() -> None:
    messages = classify_messages("sys", "  I was\tcharged \n\n twice  ")
    assert messages == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "I was charged twice"},
    ]


def test_distinct_first_tokens_are_the_decision_tokens() -> None:
    tokenizer = char_tokenizer(CHATML, ["<|im_start|>", "<|im_end|>"])
    tokens = decision_tokens(tokenizer, ["billing", "other"])
    assert tokens == (
        DecisionToken("billing", "b", tokenizer.convert_tokens_to_ids("b")),
        DecisionToken("other", "o", tokenizer.convert_tokens_to_ids("o")),
    )
    assert label_system_prompt(["billing", "other"], tokens) == (
        "Classify the customer's message into one of these intents: billing, other. "
        "Reply with the intent."
    )


def test_shared_first_tokens_get_single_token_codes() -> None:
    tokenizer = char_tokenizer(CHATML, ["<|im_start|>", "<|im_end|>"])
    tokenizer.add_tokens(["AA", "AC", "AD"])  # "AB" stays two tokens: it is skipped
    labels = ["billing", "bank", "other"]
    tokens = decision_tokens(tokenizer, labels)
    assert [(t.label, t.text) for t in tokens] == [
        ("billing", "AA"),
        ("bank", "AC"),
        ("other", "AD"),
    ]
    for token in tokens:
        assert tokenizer(token.text, add_special_tokens=False)["input_ids"] == [token.token_id]
    assert label_system_prompt(labels, tokens).endswith(
        "Reply with the intent's key word.\nAA: billing\nAC: bank\nAD: other"
    )
    with pytest.raises(DecisionTokenError, match="only 3 two-letter codes"):
        decision_tokens(tokenizer, [*labels, "bonus"])


def test_shared_first_tokens_get_a_word_of_their_own_name() -> None:
    tokenizer = char_tokenizer(CHATML, ["<|im_start|>", "<|im_end|>"])
    tokenizer.add_tokens([" card", " arrival", "linking", " Linking", " pin", " the"])
    labels = ["card_arrival", "card_linking", "card_the_pn", "card_payment"]
    tokens = decision_tokens(tokenizer, labels)
    # the rarer word wins over "card" (in every label), lower case and a space first;
    # "pn" is too short and "the" is a function word, taken only as a last resort;
    # card_payment has only " card" (" payment" is not one token) and chooses first
    assert [(t.label, t.text) for t in tokens] == [
        ("card_arrival", " arrival"),
        ("card_linking", "linking"),
        ("card_the_pn", " the"),
        ("card_payment", " card"),
    ]
    for token in tokens:
        assert tokenizer(token.text, add_special_tokens=False)["input_ids"] == [token.token_id]
    assert label_system_prompt(labels, tokens).endswith(
        "key word.\narrival: card_arrival\nlinking: card_linking\n"
        "the: card_the_pn\ncard: card_payment"
    )
    # one label without a usable word: every label gets a code instead
    tokenizer.add_tokens(["AA", "AB", "AC", "AD", "AE"])
    assert [t.text for t in decision_tokens(tokenizer, [*labels, "card_x1"])] == [
        "AA", "AB", "AC", "AD", "AE"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("labels", "message"),
    [([], "no labels"), (["a", "a"], "not distinct"), (["a", ""], "encodes to no tokens"),
     ([f"l{i}" for i in range(MAX_DECISION_LABELS + 1)], "at most 128")],
)  # fmt: skip
def test_impossible_label_sets_are_refused(labels: list[str], message: str) -> None:
    tokenizer = char_tokenizer(CHATML, ["<|im_start|>", "<|im_end|>"])
    with pytest.raises(DecisionTokenError, match=message):
        decision_tokens(tokenizer, labels)


def test_the_prompt_needs_the_labels_own_tokens_in_order() -> None:
    tokenizer = char_tokenizer(CHATML, ["<|im_start|>", "<|im_end|>"])
    tokens = decision_tokens(tokenizer, ["billing", "other"])
    with pytest.raises(DecisionTokenError, match="label order"):
        label_system_prompt(["other", "billing"], tokens)


@pytest.mark.heavy  # the embedded model's tokenizer
def test_the_served_tokenizer_gives_the_designed_tokens() -> None:
    from transformers import AutoTokenizer

    from gateway.config import Settings
    from gateway.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(None, Settings().model_cache_dir).path)
    demo = ["password_reset", "billing_inquiry", "technical_support", "general_question"]
    assert [t.text for t in decision_tokens(tokenizer, demo)] == [
        "password", "b", "technical", "general"
    ]  # fmt: skip
    root = Path(__file__).resolve().parents[3]
    banking = json.loads((root / "data/banking77/categories.json").read_text())
    tokens = decision_tokens(tokenizer, banking)
    assert [t.text for t in tokens[:3]] == [" arrival", " linking", " rate"]
    assert len({t.token_id for t in tokens}) == 77
    for token in tokens:
        assert render_answer(tokenizer, token.text)[0] == token.token_id
