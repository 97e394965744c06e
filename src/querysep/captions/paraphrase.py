"""A deterministic rule-based paraphraser for sound captions (the ``offline`` backend).

It reads a caption as ``subject verb rest`` (``a dog | barks | loudly``), or as
``the barking of a dog``, or as a bare sound label (``dog``, ``chirping birds``,
``clock tick``), and writes variants of it:

* verb forms: ``a dog barks`` / ``a dog barking`` / ``the barking of a dog``;
* active and passive: ``a man opens a door`` / ``a door is opened by a man``;
* word order: a trailing place phrase moved to the front (``in the distance, a dog
  barks``), and the two clauses of ``A while B`` swapped (``while B, A``);
* added adverbs (``clearly``, ``repeatedly``...) and templates (``the sound of a dog
  barking``, ``there is a dog barking``), including one with a keyword the caption lacks;
* synonyms of sound sources, sound verbs, adjectives, adverbs and phrases
  (:mod:`querysep.captions.lexicon`).

Every variant goes through :func:`querysep.captions.validate.check_caption`, so the
captions returned obey the same rules as an LLM's. The random choices are seeded by the
caption and its keywords: the same input always gives the same output.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from . import lexicon as lx
from .validate import check_caption

__all__ = ["paraphrase"]

_CONNECTORS = ("while", "whilst", "as", "and")
_NO_ARTICLE = frozenset("someone somebody something it he she they we you".split())  # noqa: SIM905
_NOT_NOMINAL = frozenset({"sound", "sounds"})
_AMBIGUOUS_NUMBER = frozenset({"sheep", "deer", "fish"})
_AUXILIARIES = frozenset({"is", "are", "was", "were"})
#: Words after a verb that belong to it ("passes by"): an added adverb goes after them.
_PARTICLES = frozenset({"by", "past", "away", "off", "up", "down", "around", "out"})


def _build_forms() -> dict[str, tuple[str, str]]:
    forms: dict[str, tuple[str, str]] = {}
    for group in lx.VERB_GROUPS:
        for base in group:
            for form in ("3sg", "ing", "base"):
                forms.setdefault(lx.inflect(base, form), (base, form))
    return forms


_VERB_FORMS = _build_forms()
_VERB_SYNONYMS: dict[str, list[str]] = {}
for _group in lx.VERB_GROUPS:
    for _base in _group:
        _VERB_SYNONYMS.setdefault(_base, []).extend(v for v in _group if v != _base)

_WORD_SYNONYMS: dict[str, list[str]] = {}
for _group in lx.NOUN_GROUPS:
    for _noun in _group:
        _WORD_SYNONYMS.setdefault(_noun, []).extend(n for n in _group if n != _noun)
        if lx.plural(_noun) != _noun:
            _WORD_SYNONYMS.setdefault(lx.plural(_noun), []).extend(
                lx.plural(n) for n in _group if n != _noun
            )
for _group in (*lx.ADJECTIVE_GROUPS, *lx.ADVERB_GROUPS, *lx.PHRASE_GROUPS):
    for _word in _group:
        _WORD_SYNONYMS.setdefault(_word, []).extend(w for w in _group if w != _word)
_LONGEST_PHRASE = max(len(key.split()) for key in _WORD_SYNONYMS)
_ADVERB_WORDS = frozenset(w for group in lx.ADVERB_GROUPS for w in group) | set(lx.ADVERBS)


@dataclass(frozen=True)
class _Clause:
    """``subject verb rest``; ``object_end`` marks the object inside ``rest`` (0: none)."""

    subject: tuple[str, ...]
    verb: str
    rest: tuple[str, ...]
    plural: bool
    object_end: int = 0


def _is_plural(subject: Sequence[str]) -> bool:
    head = subject[subject.index("of") - 1] if "of" in subject[1:] else subject[-1]
    if "and" in subject or subject[0] in ("two", "three", "several", "many", "some"):
        return head not in lx.MASS_NOUNS
    if head in lx.PLURAL_ONLY or head in _AMBIGUOUS_NUMBER:
        return True
    if head in lx.MASS_NOUNS or head.endswith(("ss", "us", "is")):
        return False
    return head.endswith("s")


def _with_article(subject: tuple[str, ...]) -> tuple[str, ...]:
    """Add "a" to a bare singular count noun ("dog barks" -> "a dog barks")."""
    if subject[0] in lx.DETERMINERS or subject[0] in _NO_ARTICLE or _is_plural(subject):
        return subject
    if subject[-1] in lx.MASS_NOUNS:
        return subject
    return ("a", *subject)


def _object_end(rest: tuple[str, ...]) -> int:
    """Length of the noun phrase opening ``rest`` when it starts with a determiner."""
    if not rest or rest[0] not in lx.DETERMINERS:
        return 0
    end = 1
    while end < len(rest) and end < 5:
        word = rest[end]
        if word in lx.PREPOSITIONS or word in _CONNECTORS or word == "," or word in _VERB_FORMS:
            break
        if word in _ADVERB_WORDS or word.endswith("ly"):
            break
        end += 1
    return end if end > 1 else 0


def _parse(tokens: tuple[str, ...]) -> _Clause | None:
    """Read ``tokens`` as one clause, or None."""
    if len(tokens) >= 3:
        start = 1 if tokens[0] == "the" else 0
        head = tokens[start] if start < len(tokens) else ""
        if (
            head in _VERB_FORMS
            and head not in _NOT_NOMINAL
            and tokens[start + 1 : start + 2] == ("of",)
        ):
            subject: list[str] = []
            for word in tokens[start + 2 :]:
                if word in lx.PREPOSITIONS or word == ",":
                    break
                subject.append(word)
            if subject:
                rest = tokens[start + 2 + len(subject) :]
                verb = _VERB_FORMS[head][0]
                subj = _with_article(tuple(subject))
                return _Clause(subj, verb, rest, _is_plural(subj))
    for i in range(1, len(tokens)):
        word = tokens[i]
        if word not in _VERB_FORMS or tokens[i - 1] in lx.DETERMINERS:
            continue
        if tokens[i - 1] in lx.PREPOSITIONS or tokens[i - 1] in ("of", ","):
            return None
        base, form = _VERB_FORMS[word]
        subject = tokens[:i]
        if form == "ing" and subject[-1] in _AUXILIARIES and len(subject) > 1:
            subject = subject[:-1]  # "people are talking"
        if subject[-1] in _VERB_FORMS and _VERB_FORMS[subject[-1]][1] == "ing":
            return None  # "drinking sipping"
        plural = _is_plural(subject)
        singular_count = not plural and subject[-1] not in lx.MASS_NOUNS
        if form == "base" and singular_count and len(tokens) > i + 1:
            continue  # "a low hum": not a verb
        if form == "3sg" and plural:
            continue
        subject = _with_article(subject)
        rest = tokens[i + 1 :]
        obj = _object_end(rest) if base in lx.TRANSITIVE else 0
        return _Clause(subject, base, rest, _is_plural(subject), obj)
    return None


def _label_clause(tokens: tuple[str, ...]) -> _Clause | None:
    """A clause for a bare label: "chirping birds", "brushing teeth", "dog"."""
    if (
        len(tokens) == 2
        and tokens[0] in _VERB_FORMS
        and _VERB_FORMS[tokens[0]][1] == "ing"
        and tokens[1] not in _VERB_FORMS
    ):
        base = _VERB_FORMS[tokens[0]][0]
        if base in lx.TRANSITIVE:
            return _Clause(("someone",), base, (tokens[1],), False, 1)
        subject = _with_article((tokens[1],))
        return _Clause(subject, base, (), _is_plural(subject))
    if len(tokens) <= 3 and not any(w in _VERB_FORMS for w in tokens[1:]):
        head = tokens[-1]
        singular = head[:-1] if head.endswith("s") and head[:-1] in lx.SOURCE_VERBS else head
        verb = lx.SOURCE_VERBS.get(singular)
        if verb is not None:
            subject = _with_article(tokens)
            return _Clause(subject, verb, (), _is_plural(subject))
    return None


# ------------------------------------------------------------------------------ realising


def _finite(c: _Clause, adverb: str | None = None) -> list[str]:
    verb = lx.inflect(c.verb, "base" if c.plural else "3sg")
    rest = list(c.rest)
    if adverb:
        at = c.object_end
        while at < len(rest) and rest[at] in _PARTICLES:
            at += 1
        rest.insert(at, adverb)
    return [*c.subject, verb, *rest]


def _gerund(c: _Clause) -> list[str]:
    return [*c.subject, lx.inflect(c.verb, "ing"), *c.rest]


def _nominal(c: _Clause) -> list[str] | None:
    if c.object_end or (c.rest and c.rest[0] not in lx.PREPOSITIONS and c.rest[0] != ","):
        return None
    if " " in c.verb or c.subject[0] in _NO_ARTICLE:
        return None
    return ["the", lx.inflect(c.verb, "ing"), "of", *c.subject, *c.rest]


def _passive(c: _Clause, gerund: bool = False) -> list[str] | None:
    if not c.object_end or (c.subject[0] in _NO_ARTICLE and not gerund):
        return None
    obj, after = c.rest[: c.object_end], c.rest[c.object_end :]
    aux = "being" if gerund else ("are" if _is_plural(obj) else "is")
    by = [] if c.subject[0] in _NO_ARTICLE else ["by", *c.subject]
    return [*obj, aux, lx.inflect(c.verb, "part"), *by, *after]


def _front_place(c: _Clause) -> list[str] | None:
    """Move a trailing place phrase to the front: "in the distance, a dog barks"."""
    rest = c.rest
    for k in range(c.object_end, len(rest)):
        if rest[k] in lx.PREPOSITIONS or rest[k : k + 2] in (("far", "away"), ("close", "by")):
            tail = rest[k:]
            if len(tail) <= 6 and not any(w in _VERB_FORMS or w == "," for w in tail):
                head = replace(c, rest=rest[:k])
                return [*tail, ",", *_finite(head)]
            return None
    return None


def _variants(c: _Clause, rng: random.Random) -> tuple[list[list[str]], list[list[str]]]:
    """Variants of a clause: (sentences, noun phrases such as "the barking of a dog")."""
    has_adverb = any(w in _ADVERB_WORDS or w.endswith("ly") for w in c.rest)
    adverbs = [] if has_adverb else list(lx.ADVERBS)
    rng.shuffle(adverbs)
    gerund = _gerund(c)
    clauses = [_finite(c), _passive(c), _front_place(c)]
    clauses += [_finite(c, a) for a in adverbs[:2]]
    clauses += [["there", "are" if c.plural else "is", *gerund]]
    phrases = [gerund, _nominal(c), _passive(c, gerund=True)]
    phrases += [["the", "sound", "of", *gerund], [*gerund, "can", "be", "made", "out"]]
    return [v for v in clauses if v], [v for v in phrases if v]


def _noun_phrase_variants(tokens: tuple[str, ...]) -> list[list[str]]:
    bare = len(tokens) <= 3 and tokens[-1] not in _VERB_FORMS
    np = list(_with_article(tokens)) if bare else list(tokens)
    plural = _is_plural(tokens)
    return [
        ["the", "sound", "of", *np],
        ["there", "are" if plural else "is", *np],
        [*np, "can", "be", "made", "out"],
        [*np, "make" if plural else "makes", "a", "sound"],
        ["noise", "from", *np],
        ["a", "clip", "of", *np],
    ]


def _split(tokens: tuple[str, ...]) -> tuple[tuple[str, ...], str, tuple[str, ...]] | None:
    """Split "A while B" into its clauses when both parse."""
    for i, word in enumerate(tokens):
        if word in _CONNECTORS and 0 < i < len(tokens) - 1:
            left, right = tokens[:i], tokens[i + 1 :]
            if left[-1] == ",":
                left = left[:-1]
            if _parse(left) is not None and _parse(right) is not None:
                return left, word, right
    return None


def _structures(tokens: tuple[str, ...], rng: random.Random) -> list[list[str]]:
    split = _split(tokens)
    if split is not None:
        left, word, right = split
        first, second = _parse(left), _parse(right)
        assert first is not None and second is not None
        clauses, phrases = _variants(first, rng)
        lefts = clauses if word == "and" else clauses + phrases
        out = [[*v, word, *right] for v in lefts]
        if word != "and":
            out.append([*right, word, *left])
            out.append(["while", *right, ",", *left])
        else:
            out.append([*right, "and", *left])
        out += [[*left, word, *v] for v in _variants(second, rng)[0][:3]]
        return out
    clause = _parse(tokens) or _label_clause(tokens)
    if clause is not None:
        clauses, phrases = _variants(clause, rng)
        return clauses + phrases
    return _noun_phrase_variants(tokens)


# ------------------------------------------------------------------------------- synonyms


def _synonyms(tokens: list[str], rng: random.Random, rate: float = 0.6) -> list[str]:
    """Replace words and phrases by synonyms, each with probability ``rate``."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for n in range(min(_LONGEST_PHRASE, len(tokens) - i), 0, -1):
            key = " ".join(tokens[i : i + n])
            options = _WORD_SYNONYMS.get(key)
            if options is None and n == 1 and key in _VERB_FORMS and i > 0:
                base, form = _VERB_FORMS[key]
                if tokens[i - 1] not in lx.DETERMINERS and form != "base":
                    options = [lx.inflect(v, form) for v in _VERB_SYNONYMS.get(base, [])]
            options = [o for o in options or () if o not in tokens]
            if options:
                out.extend((rng.choice(options) if rng.random() < rate else key).split())
                i += n
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


# ---------------------------------------------------------------------------------- text


def _tokenize(text: str) -> tuple[str, ...]:
    text = re.sub(r"[.!?]+\s*$", "", text.strip()).lower()
    return tuple(re.sub(r",", " , ", text).split())


def _text(tokens: Sequence[str], capital: bool, period: bool) -> str:
    words = list(tokens)
    for k in range(len(words) - 1):  # a/an before the next word
        if words[k] in ("a", "an"):
            words[k] = "an" if words[k + 1][:1] in "aeio" else "a"
    text = " ".join(words).replace(" ,", ",").strip(" ,")
    if capital:
        text = text[:1].upper() + text[1:]
    return text + "." if period else text


def _seed(caption: str, keywords: Sequence[str]) -> int:
    digest = hashlib.sha256("\x1f".join([caption, *keywords]).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _candidates(
    tokens: tuple[str, ...], keywords: Sequence[str], rng: random.Random
) -> Iterator[list[str]]:
    structures = _structures(tokens, rng)
    order = list(range(len(structures)))
    rng.shuffle(order)
    for k in order:
        yield _synonyms(structures[k], rng)
    missing = [k.lower() for k in keywords if k.strip() and k.lower() not in " ".join(tokens)]
    if missing:
        yield [*tokens, ",", "with", "sounds", "of", *missing[0].split()]
    for k in order:
        yield structures[k]
    yield ["in", "this", "clip", ",", *tokens]
    yield [*tokens, ",", "clearly", "audible"]
    for _ in range(3):
        for k in order:
            yield _synonyms(structures[k], rng, rate=0.9)


def paraphrase(caption: str, keywords: Sequence[str] = (), num_captions: int = 5) -> list[str]:
    """Rewrite a sound caption ``num_captions`` times, deterministically.

    Args:
        caption: The caption (``"a dog barks loudly"``) or a label (``"chirping birds"``).
        keywords: The clip's keywords; one the caption lacks may be worked in.
        num_captions: How many captions to return at most.

    Returns:
        Up to ``num_captions`` distinct captions that pass
        :func:`~querysep.captions.validate.check_caption` (fewer only for captions the
        rules leave little room for, e.g. ones of nearly 20 words). They keep the input's
        style: a capital first letter and a final period when it has them.
    """
    tokens = _tokenize(caption)
    if not tokens:
        return []
    stripped = caption.strip()
    capital, period = stripped[:1].isupper(), stripped.endswith(".")
    rng = random.Random(_seed(caption, keywords))
    kept: list[str] = []
    seen: set[str] = set()
    for candidate in _candidates(tokens, keywords, rng):
        text = _text(candidate, capital, period)
        if text in seen:
            continue
        seen.add(text)
        if check_caption(text, caption, kept) is None:
            kept.append(text)
            if len(kept) == num_captions:
                break
    return kept
