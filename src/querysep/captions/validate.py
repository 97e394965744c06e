"""Parse an LLM's numbered answer and check each caption against the prompt's rules.

The rules, in the order they are checked (the first broken one is the reason given):

1. ``empty``: nothing left after the index and quotes are stripped.
2. ``markup or special token``: a model's special token (``<|im_end|>``) or a tag
   (``<s>``, ``</s>``, ``<unk>``, ``<br/>``): ``<`` and a letter up to the next ``>``.
3. ``no word``: not one word of two letters or more (``a``, ``12345``).
4. ``more than one sentence``: a ``.``, ``!`` or ``?`` followed by more text.
5. ``20 words or more``: the prompt asks for fewer than 20 (words are split on spaces);
   ``over 200 characters``: a caption of few but very long "words".
6. ``uses "heard"`` / ``uses "recorded"``: the two words the prompt forbids.
7. ``copies the input``: the same words as the caption being rewritten.
8. ``duplicate``: the same words as a caption already kept.
9. ``names a place``, ``names a person``, ``mentions a time``, ``names a recording device``:
   best-effort checks with the small lists below. A capitalised word inside a sentence is
   taken for a person's name (sound captions are lower-case prose; ``I`` and a few
   abbreviations such as ``TV`` are allowed). Places are a short list of well-known
   countries and cities whose names are not also common words (no "china", "turkey",
   "nice"). Times are clock times (``5:30``, ``7 pm``, ``o'clock``), weekdays, months and
   years (``1999``); parts of the day ("in the morning", "at night") describe the scene and
   are allowed. Devices are microphone, recorder and camera brands and kinds.

"Same words" compares case- and punctuation-insensitively (:func:`normalize`).

A reasoning model's thinking (``<think>...</think>``, also ``<thinking>`` and
``<reasoning>``) is not part of its answer: :func:`strip_reasoning` removes it before the
answer is parsed, so a numbered plan in it is not taken for captions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "MAX_WORDS",
    "Rejection",
    "Validation",
    "check_caption",
    "normalize",
    "parse_numbered",
    "strip_reasoning",
    "validate_captions",
]

#: Most words a caption may have ("less than 20 words").
MAX_WORDS = 19
#: Most characters a caption may have (19 long words fit).
MAX_CHARS = 200
#: Most characters of a refused text that are kept (in the cache, in messages).
MAX_REJECTED_CHARS = 500

_BANNED_WORDS = ("heard", "recorded")

_PLACES = frozenset(
    """
    america usa england britain france germany italy spain japan india canada mexico brazil
    russia australia africa europe asia ireland scotland sweden norway finland denmark
    poland greece egypt korea vietnam thailand portugal netherlands belgium switzerland
    austria argentina chile peru london paris berlin tokyo madrid rome beijing moscow sydney
    toronto chicago boston seattle amsterdam barcelona dublin vienna prague
    """.split()  # noqa: SIM905
)
_PLACE_PHRASES = ("new york", "los angeles", "san francisco", "hong kong", "new delhi")

_DEVICES = frozenset(
    """
    microphone microphones mic mics dictaphone camcorder gopro tascam iphone smartphone h4n
    h5 h6 h1n zoom-h4n zoom-h5 walkman
    """.split()  # noqa: SIM905
)
_DEVICE_PHRASES = (
    "voice recorder",
    "field recorder",
    "tape recorder",
    "recording device",
    "zoom h",
    "sony pcm",
)

_WEEKDAYS_MONTHS = frozenset(
    """
    monday tuesday wednesday thursday friday saturday sunday january february march april
    june july august september october november december
    """.split()  # noqa: SIM905
)  # "may" is left out: it is also a common verb

#: Upper-case words that are not names.
_CAPITALS_ALLOWED = frozenset({"i", "tv", "ok", "dj", "mc", "uk", "us", "am", "pm", "a"})

_TIME = re.compile(
    r"\b\d{1,2}[:.]\d{2}\b|\b\d{1,2}\s*(?:a\.?m\.?|p\.?m\.?)(?=\W|$)|o'clock|\b(?:1[89]|20)\d{2}\b",
    re.IGNORECASE,
)
_INDEX = re.compile(r"^\s*(?:[*_#>\-]+\s*)?\(?(\d{1,2})\s*[.):\]-]\s*(?:[*_]+\s*)?(.*)$")
_SECOND_SENTENCE = re.compile(r"[.!?](?:[\"'”’)]*)\s+\S")
_MARKUP = re.compile(r"<\|[^<>]*\|>|</?[^\W\d_][^<>]*>")
_WORD_OF_TWO_LETTERS = re.compile(r"[^\W\d_]{2,}")
_REASONING = re.compile(r"<(think|thinking|reasoning)>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_REASONING_END = re.compile(r"</(?:think|thinking|reasoning)\s*>", re.IGNORECASE)
_REASONING_START = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)


@dataclass(frozen=True)
class Rejection:
    """A caption that was refused, and why (``text`` cut to :data:`MAX_REJECTED_CHARS`)."""

    text: str
    reason: str

    def __post_init__(self) -> None:
        if len(self.text) > MAX_REJECTED_CHARS:  # an answer can be huge; the cache keeps this
            object.__setattr__(self, "text", self.text[:MAX_REJECTED_CHARS])


@dataclass
class Validation:
    """The outcome of :func:`validate_captions`.

    Attributes:
        kept: Captions that obey every rule, in answer order.
        rejected: The others, each with the first rule it breaks.
    """

    kept: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def normalize(text: str) -> str:
    """Lower case, punctuation removed, spaces collapsed: the key of "same words"."""
    return " ".join(re.sub(r"[^\w\s]|_", " ", text.lower()).split())


def _clean(text: str) -> str:
    text = " ".join(text.split())
    text = text.strip().strip("*_").strip()
    if len(text) >= 2 and text[0] in "\"'“‘" and text[-1] in "\"'”’":
        text = text[1:-1].strip()
    return text


def strip_reasoning(answer: str) -> str:
    """``answer`` without a reasoning model's thinking: each ``<think>...</think>`` block
    (or ``<thinking>``, ``<reasoning>``) removed, then everything up to a closing tag left
    without its opening one (servers that drop the opening tag), and everything from an
    opening tag left unclosed (thinking cut off by the token limit)."""
    answer = _REASONING.sub("", answer)
    ends = list(_REASONING_END.finditer(answer))
    if ends:
        answer = answer[ends[-1].end() :]
    start = _REASONING_START.search(answer)
    return answer[: start.start()] if start else answer


def parse_numbered(answer: str) -> list[str]:
    """The captions of a numbered answer, in order.

    Each line that starts with an index (``1.``, ``2)``, ``(3)``, ``4:``, ``**5.**``,
    ``- 1.``) is one caption; other lines (introductions, explanations, closing remarks)
    are ignored, and so is a reasoning model's thinking (:func:`strip_reasoning`).

    Args:
        answer: The model's whole reply.

    Returns:
        The text after each index, quotes and markdown emphasis stripped.
    """
    captions = []
    for line in strip_reasoning(answer).splitlines():
        match = _INDEX.match(line)
        if match:
            captions.append(_clean(match.group(2)))
    return captions


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'’-]+", text)


def check_caption(text: str, source: str = "", kept: Iterable[str] = ()) -> str | None:
    """The first rule ``text`` breaks (see the module docstring), or None when it is valid.

    Args:
        text: The candidate caption.
        source: The caption it rewrites.
        kept: Captions already accepted for the same source.
    """
    if not normalize(text):
        return "empty"
    if _MARKUP.search(text):
        return "markup or special token"
    if not _WORD_OF_TWO_LETTERS.search(text):
        return "no word"
    if _SECOND_SENTENCE.search(text.strip()):
        return "more than one sentence"
    if len(text.split()) > MAX_WORDS:
        return f"{MAX_WORDS + 1} words or more"
    if len(text) > MAX_CHARS:
        return f"over {MAX_CHARS} characters"
    key = normalize(text)
    words = key.split()
    for banned in _BANNED_WORDS:
        if banned in words:
            return f'uses "{banned}"'
    if source and key == normalize(source):
        return "copies the input"
    if key in {normalize(k) for k in kept}:
        return "duplicate"
    padded = f" {key} "
    if any(w in _PLACES for w in words) or any(f" {p} " in padded for p in _PLACE_PHRASES):
        return "names a place"
    if _TIME.search(text) or any(w in _WEEKDAYS_MONTHS for w in words):
        return "mentions a time"
    if any(w in _DEVICES for w in words) or any(f" {p}" in padded for p in _DEVICE_PHRASES):
        return "names a recording device"
    raw = _words(text)
    for word in raw[1:]:
        if word[:1].isupper() and word.lower() not in _CAPITALS_ALLOWED:
            return "names a person"
    return None


def validate_captions(
    candidates: Sequence[str], source: str = "", kept: Iterable[str] = ()
) -> Validation:
    """Split candidates into valid captions and rejections.

    Args:
        candidates: Captions to check, e.g. from :func:`parse_numbered`.
        source: The caption they rewrite.
        kept: Captions already accepted (a candidate equal to one is a duplicate); not
            repeated in the result.

    Returns:
        The kept captions (whitespace collapsed) and the rejections with their reasons.
    """
    result = Validation()
    accepted = list(kept)
    for candidate in candidates:
        text = candidate.strip()
        reason = check_caption(text, source, accepted)
        if reason is None:
            text = " ".join(text.split())
            result.kept.append(text)
            accepted.append(text)
        else:
            result.rejected.append(Rejection(text, reason))
    return result
