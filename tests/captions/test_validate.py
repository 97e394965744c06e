"""Parsing numbered answers and the caption rules."""

from __future__ import annotations

import pytest

from querysep.captions.validate import (
    MAX_CHARS,
    MAX_REJECTED_CHARS,
    MAX_WORDS,
    Rejection,
    check_caption,
    normalize,
    parse_numbered,
    strip_reasoning,
    validate_captions,
)


def test_parse_numbered_formats():
    answer = """Sure! Here are five captions:

1. A dog barks loudly.
2) "A puppy yaps nearby."
(3) **A hound woofs twice.**
4: a dog barks at a passing car
- 5. A canine barks repeatedly.
I hope these help!"""
    assert parse_numbered(answer) == [
        "A dog barks loudly.",
        "A puppy yaps nearby.",
        "A hound woofs twice.",
        "a dog barks at a passing car",
        "A canine barks repeatedly.",
    ]


def test_parse_without_numbers_is_empty():
    assert parse_numbered("A dog barks. A cat meows.") == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("...", "empty"),
        ("A dog barks. A cat answers.", "more than one sentence"),
        ("a dog barks! then a cat meows", "more than one sentence"),
        (" ".join(["word"] * (MAX_WORDS + 1)), "20 words or more"),
        ("a dog barking is heard", 'uses "heard"'),
        ("Barking Recorded outside", 'uses "recorded"'),
        ("A dog barks!", "copies the input"),
        ("church bells ring in London", "names a place"),
        ("traffic noise in new york", "names a place"),
        ("John whistles a tune", None),  # a capital first word is just the sentence start
        ("a man named John whistles", "names a person"),
        ("a clock strikes at 5:30", "mentions a time"),
        ("an alarm goes off at 7 pm", "mentions a time"),
        ("fireworks on Saturday", "mentions a time"),
        ("birds singing in 2019", "mentions a time"),
        ("wind noise on the microphone", "names a recording device"),
        ("someone taps a voice recorder", "names a recording device"),
        ("a TV plays in the next room", None),
        ("a rooster crows in the morning", None),
        ("a phone rings twice", None),
        ("tea is poured into a china cup", None),
        ("a turkey gobbles", None),
        ("a", "no word"),
        ("12345", "no word"),
        ("3 4.", "no word"),
        ("Caption", None),  # one real word is still a caption
        ("<|im_end|>", "markup or special token"),
        ("</s>", "markup or special token"),
        ("a dog barks <unk>", "markup or special token"),
        ("a dog barks<br/>", "markup or special token"),
        ("a dog barks <3 times", None),
    ],
)
def test_rules(text, reason):
    assert check_caption(text, source="a dog barks") == reason


def test_exactly_nineteen_words_pass():
    assert check_caption(" ".join(["dogs"] * MAX_WORDS)) is None


def test_duplicates_ignore_case_and_punctuation():
    result = validate_captions(
        ["A dog barks loudly.", "a dog barks, loudly", "a hound barks", "A DOG BARKS LOUDLY!"],
        source="a dog barks",
    )
    assert result.kept == ["A dog barks loudly.", "a hound barks"]
    assert [r.reason for r in result.rejected] == ["duplicate", "duplicate"]


def test_already_kept_count_as_duplicates():
    result = validate_captions(["a hound barks", "a puppy yaps"], kept=["A hound barks."])
    assert result.kept == ["a puppy yaps"]
    assert result.rejected[0].reason == "duplicate"


def test_normalize():
    assert normalize("  A Dog's  BARK, loud!! ") == "a dog s bark loud"


def test_a_reasoning_block_is_not_part_of_the_answer():
    plan = "1. describe the dog\n2. mention the volume"
    answer = f"<think>\n{plan}\n</think>\n1. a dog barks loudly\n2. a hound is yelping"
    assert parse_numbered(answer) == ["a dog barks loudly", "a hound is yelping"]
    # a server that drops the opening tag; a tag in capitals; a block cut off by the token limit
    assert parse_numbered(f"{plan}\n</think>\n1. a dog barks") == ["a dog barks"]
    assert parse_numbered(f"<THINKING>{plan}</THINKING>1. a dog barks") == ["a dog barks"]
    assert parse_numbered(f"<reasoning>\n{plan}") == []
    assert strip_reasoning("1. a dog barks\n<think>\n1. oops") == "1. a dog barks\n"


def test_a_caption_of_few_but_huge_words_is_refused():
    assert check_caption("a " + "x" * 5000 + " dog barking") == f"over {MAX_CHARS} characters"
    assert check_caption("a dog " + "barks " * 17) is None  # 19 words, 108 characters


def test_a_refused_text_is_kept_short():
    (rejection,) = validate_captions(["a " + "x" * 5000]).rejected
    assert len(rejection.text) == MAX_REJECTED_CHARS
    assert len(Rejection("y" * 9000, "no numbered captions").text) == MAX_REJECTED_CHARS
