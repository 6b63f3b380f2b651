"""Messages brought back to an adapter's training spelling and casing."""

from __future__ import annotations

from gateway.common.lexicon import MAX_WORDS, Lexicon

TRAINING = [
    "My card was charged twice.",
    "Why was my card charged twice?",
    "I want to change my PIN.",
    "How do I change my PIN at an ATM?",
    "The refund has not arrived in my account.",
    "Where is my refund?",
    "Can I top up by transfer?",
    "Please cancel the transfer.",
    "i think my card was stolen",
]


def lexicon() -> Lexicon:
    return Lexicon.from_texts(TRAINING)


def test_swapped_dropped_doubled_and_wrong_letters_are_fixed() -> None:
    lex = lexicon()
    fixed = lex.canonical("My card was chraged twcie and the refnud has not arrrived.")
    assert fixed.text == "My card was charged twice and the refund has not arrived."
    assert fixed.corrections == 4


def test_known_text_is_left_alone() -> None:
    for text in ("Why was my card charged twice?", "Please cancel the transfer."):
        assert lexicon().canonical(text).text == text
        assert lexicon().canonical(text).corrections == 0


def test_lower_case_words_take_their_usual_casing_and_the_first_a_capital() -> None:
    fixed = lexicon().canonical("how do i change my pin at an atm?")
    assert fixed.text == "How do I change my PIN at an ATM?"
    assert fixed.corrections == 4  # How, I, PIN, ATM


def test_a_typed_casing_is_kept_on_a_corrected_word() -> None:
    assert lexicon().canonical("Refnud please").text == "Refund please"
    assert lexicon().canonical("My REFNUD").text == "My REFUND"


def test_spaces_and_repeated_marks_collapse() -> None:
    fixed = lexicon().canonical("   Where   is my refund??!!  ")
    assert fixed.text == "Where is my refund?!"
    assert fixed.corrections == 0


def test_short_and_unknown_words_stay() -> None:
    # "tup" is one edit from "top" but too short to guess; "zzzzz" is near nothing known.
    assert lexicon().canonical("Can I tup up zzzzz?").text == "Can I tup up zzzzz?"


def test_the_most_frequent_neighbour_wins() -> None:
    lex = Lexicon.from_texts(["a cart here", "a card here", "a card there"])
    assert lex.canonical("a carx here").text == "a card here"


def test_first_words_count_in_lower_case_but_set_no_casing() -> None:
    lex = Lexicon.from_texts(["Hello there", "Hello again", "hello world"])
    assert lex.counts["hello"] == 3 and "Hello" not in lex.counts
    assert lex.capitalize_first
    assert lex.canonical("hello there").text == "Hello there"
    assert not Lexicon.from_texts(["hello there", "hi again"]).capitalize_first


def test_work_is_bounded_on_a_huge_message() -> None:
    words = ["chraged"] * (MAX_WORDS + 50)
    fixed = lexicon().canonical(" ".join(words))
    assert fixed.text.split()[:MAX_WORDS] == ["Charged"] + ["charged"] * (MAX_WORDS - 1)
    assert fixed.text.split()[MAX_WORDS:] == ["chraged"] * 50


def test_the_block_round_trips() -> None:
    block = lexicon().block()
    assert block["format"] == "word_counts" and block["version"] == 1
    again = Lexicon(block["words"], block["capitalize_first"])
    assert again.canonical("chraged").text == lexicon().canonical("chraged").text
