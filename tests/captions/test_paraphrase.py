"""The offline paraphraser: deterministic, and 5 valid captions for real captions."""

from __future__ import annotations

import json
import random
from importlib import resources

import pytest

from querysep.captions import OfflineBackend, load_template, paraphrase
from querysep.captions.paraphrase import _structures, _text, _tokenize
from querysep.captions.validate import check_caption

# AudioCaps / Clotho-style captions written for this test
SENTENCES = [
    "A man speaks while a car passes by.",
    "Birds chirp in the distance as wind blows",
    "People are talking in a crowded room",
    "A woman is speaking and a baby cries",
    "Water flows over rocks in a stream",
    "A vehicle engine idles and then revs up",
    "A man opens a door and walks inside",
    "Heavy rain falls on a tin roof",
    "A dog barks repeatedly in the background",
    "A train horn honks as a train passes",
    "Someone types on a keyboard quickly",
    "A crowd cheers and applauds loudly",
    "A bell rings several times",
    "Leaves rustle in the wind",
    "An engine hums steadily",
    "A helicopter flies overhead",
    "A small child laughs",
    "thunder rumbles in the distance while rain pours down",
    "footsteps on a wooden floor",
    "a toilet flushes",
]


def esc50_texts() -> list[str]:
    text = (resources.files("querysep.data") / "resources" / "esc50_captions.json").read_text()
    train = json.loads(text)["train"]
    labels = [label.replace("_", " ") for label in train]
    return labels + [c for captions in train.values() for c in captions]


@pytest.mark.parametrize("source", ["esc50", "sentences"])
def test_five_valid_captions(source):
    captions = esc50_texts() if source == "esc50" else SENTENCES
    assert len(captions) >= 20
    for caption in captions:
        out = paraphrase(caption, ["sound"])
        assert len(out) == 5, (caption, out)
        for i, text in enumerate(out):
            assert check_caption(text, caption, out[:i]) is None, (caption, text)


def test_deterministic_and_seeded_by_the_input():
    a = paraphrase("a dog barks loudly", ["dog"])
    assert a == paraphrase("a dog barks loudly", ["dog"])
    assert a != paraphrase("a dog barks loudly", ["animal"])


def test_style_is_kept():
    for text in paraphrase("A man speaks while a car passes by."):
        assert text[0].isupper() and text.endswith(".")
    for text in paraphrase("a dog barks"):
        assert text[0].islower() and not text.endswith(".")


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("a dog barks", "the barking of a dog"),
        ("barking of a dog", "a dog barks"),
        ("a man opens a door", "a door is opened by a man"),
        ("birds chirp in the distance", "in the distance, birds chirp"),
        ("chirping birds", "birds chirp"),
        ("clock tick", "a clock ticks"),
        ("brushing teeth", "someone brushes teeth"),
    ],
)
def test_structures(caption, expected):
    texts = {_text(s, False, False) for s in _structures(_tokenize(caption), random.Random(0))}
    assert expected in texts


def test_offline_backend_answer():
    answer = OfflineBackend().augment("rain falls", ["rain"], load_template(), 5)
    assert len(answer.kept) == 5 and answer.requests == 0
