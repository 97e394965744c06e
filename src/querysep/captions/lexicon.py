"""Word tables of the offline paraphraser: sound verbs, sound sources, modifiers.

Every table is small and hand-written for sound captions. Verbs are stored by their base
form and inflected by :func:`inflect`; nouns by their singular (plurals by :func:`plural`).
A word in a synonym group may be replaced by any other word of its group.
"""

from __future__ import annotations

__all__ = [
    "ADJECTIVE_GROUPS",
    "ADVERBS",
    "ADVERB_GROUPS",
    "DETERMINERS",
    "MASS_NOUNS",
    "NOUN_GROUPS",
    "PHRASE_GROUPS",
    "PLURAL_ONLY",
    "PREPOSITIONS",
    "SOURCE_VERBS",
    "TRANSITIVE",
    "VERB_GROUPS",
    "inflect",
    "plural",
]

#: Sound verbs that may stand for each other (base forms).
VERB_GROUPS: tuple[tuple[str, ...], ...] = (
    ("bark", "yap", "woof"),
    ("meow", "mew"),
    ("moo", "low"),
    ("croak", "ribbit"),
    ("cluck", "cackle"),
    ("bleat", "baa"),
    ("caw", "squawk"),
    ("crow",),
    ("oink", "grunt", "snort"),
    ("chirp", "tweet", "twitter", "warble"),
    ("buzz", "drone", "hum"),
    ("speak", "talk"),
    ("chat", "converse"),
    ("shout", "yell", "holler"),
    ("scream", "shriek", "screech"),
    ("whisper", "murmur", "mutter"),
    ("laugh", "chuckle", "giggle"),
    ("cry", "sob", "wail", "weep"),
    ("cough", "hack"),
    ("sneeze",),
    ("snore",),
    ("breathe", "pant"),
    ("clap", "applaud"),
    ("sing", "chant"),
    ("whistle",),
    ("ring", "chime", "peal"),
    ("tick", "tock"),
    ("honk", "beep", "toot"),
    ("roar", "rumble", "thunder"),
    ("pass", "drive", "go"),
    ("idle", "run", "purr"),
    ("rev",),
    ("knock", "rap"),
    ("tap", "patter"),
    ("creak", "squeak"),
    ("slam", "bang"),
    ("crackle", "pop", "sizzle"),
    ("fall", "pour"),
    ("flow", "trickle", "gurgle", "babble"),
    ("splash", "slosh"),
    ("drip",),
    ("blow", "gust", "howl"),
    ("rustle",),
    ("crunch",),
    ("hiss", "fizz"),
    ("whir", "whine"),
    ("wail", "blare"),
    ("crash", "smash", "shatter"),
    ("break", "shatter"),
    ("type",),
    ("click",),
    ("flush",),
    ("open",),
    ("close", "shut"),
    ("play",),
    ("strum", "pluck"),
    ("scrape", "scratch"),
    ("brush", "scrub"),
    ("chop", "hack"),
    ("walk", "step", "stroll"),
    ("fly", "soar"),
    ("flutter", "flap"),
    ("gobble",),
    ("neigh", "whinny"),
    ("howl",),
    ("sip", "slurp", "drink"),
    ("chew", "munch"),
    ("stir",),
    ("spin", "turn"),
    ("tear", "rip"),
    ("crumple", "crinkle"),
    ("sound", "go off"),
)

#: Verbs that take an object, so that "a man opens a door" has a passive form.
TRANSITIVE = frozenset(
    """
    open close shut slam bang knock tap play strum pluck scrape scratch brush scrub saw cut
    chop hack type click flush pour stir tear rip crumple crinkle ring hit drag push pull
    shake drop rev blow sound use turn crush bounce
    """.split()  # noqa: SIM905
)

#: Sound sources that may stand for each other (singular forms).
NOUN_GROUPS: tuple[tuple[str, ...], ...] = (
    ("dog", "hound", "canine"),
    ("puppy", "pup"),
    ("cat", "kitty", "feline"),
    ("kitten", "kitty"),
    ("rooster", "cockerel"),
    ("hen", "chicken"),
    ("pig", "hog", "swine"),
    ("cow", "heifer"),
    ("bird", "songbird"),
    ("insect", "bug"),
    ("man", "gentleman", "guy"),
    ("woman", "lady"),
    ("child", "kid", "youngster"),
    ("baby", "infant", "toddler"),
    ("person", "individual"),
    ("crowd", "group of people"),
    ("car", "automobile"),
    ("vehicle", "car"),
    ("truck", "lorry"),
    ("motorcycle", "motorbike"),
    ("airplane", "plane", "aircraft"),
    ("helicopter", "chopper"),
    ("train", "locomotive"),
    ("engine", "motor"),
    ("stream", "brook", "creek"),
    ("wave", "breaker"),
    ("clock", "timepiece"),
    ("bell", "chime"),
    ("siren", "alarm"),
    ("fire", "blaze"),
    ("rain", "rainfall"),
    ("wind", "breeze"),
    ("storm", "thunderstorm"),
    ("thunder", "thunderclap"),
    ("toilet", "lavatory"),
    ("keyboard", "keypad"),
    ("glass", "glassware"),
    ("noise", "sound"),
    ("music", "melody", "tune"),
    ("guitar", "acoustic guitar"),
    ("water", "liquid"),
    ("leaf", "foliage"),
    ("horn", "hooter"),
)

#: Adjectives that may stand for each other.
ADJECTIVE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("loud", "noisy", "booming"),
    ("quiet", "soft", "faint"),
    ("small", "little", "tiny"),
    ("large", "big", "huge"),
    ("heavy", "strong", "intense"),
    ("light", "gentle", "mild"),
    ("distant", "faraway", "remote"),
    ("steady", "constant", "continuous"),
    ("high-pitched", "shrill", "piercing"),
    ("low", "deep"),
    ("short", "brief"),
    ("long", "prolonged", "extended"),
    ("fast", "quick", "rapid"),
    ("slow", "unhurried"),
)

#: Adverbs and adverbial phrases that may stand for each other.
ADVERB_GROUPS: tuple[tuple[str, ...], ...] = (
    ("loudly", "noisily", "forcefully"),
    ("quietly", "softly", "gently"),
    ("repeatedly", "again and again", "over and over"),
    ("continuously", "constantly", "steadily", "nonstop"),
    ("quickly", "rapidly", "fast"),
    ("slowly", "gradually"),
    ("nearby", "close by"),
    ("in the distance", "far away", "from afar"),
    ("in the background", "behind"),
    ("briefly", "for a moment"),
    ("intermittently", "now and then", "on and off"),
)

#: Multi-word phrases that may stand for each other.
PHRASE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("passes by", "drives by", "goes by", "drives past"),
    ("pass by", "drive by", "go by", "drive past"),
    ("passing by", "driving by", "going by", "driving past"),
    ("sound of", "noise of"),
    ("sounds of", "noises of"),
    ("a lot of", "lots of", "plenty of"),
    ("several times", "a few times", "multiple times"),
    ("in the morning", "at dawn", "early in the day"),
)

#: Neutral adverbs the paraphraser may add after a verb.
ADVERBS: tuple[str, ...] = (
    "clearly",
    "nearby",
    "repeatedly",
    "steadily",
    "distinctly",
    "for a while",
    "close by",
)

#: The sound a bare source makes, to turn a label ("dog") into a sentence.
SOURCE_VERBS: dict[str, str] = {
    "dog": "bark",
    "puppy": "yap",
    "rooster": "crow",
    "pig": "oink",
    "cow": "moo",
    "frog": "croak",
    "cat": "meow",
    "hen": "cluck",
    "chicken": "cluck",
    "insect": "buzz",
    "bee": "buzz",
    "fly": "buzz",
    "sheep": "bleat",
    "crow": "caw",
    "bird": "chirp",
    "rain": "fall",
    "wind": "blow",
    "water": "flow",
    "stream": "flow",
    "clock": "tick",
    "baby": "cry",
    "man": "speak",
    "woman": "speak",
    "people": "talk",
    "siren": "wail",
    "bell": "ring",
    "fire": "crackle",
    "thunder": "rumble",
    "engine": "run",
    "helicopter": "fly",
    "airplane": "fly",
    "train": "pass",
    "car": "pass",
    "horn": "honk",
    "door": "creak",
}

DETERMINERS = frozenset(
    """
    a an the some two three several many few one this that his her their its our
    """.split()  # noqa: SIM905
)
PREPOSITIONS = frozenset(
    """
    in on at near outside inside from through along over under across behind beside
    """.split()  # noqa: SIM905
)
#: Nouns without a plural or an article ("rain falls", not "a rain falls").
MASS_NOUNS = frozenset(
    """
    rain water wind thunder fire traffic music applause laughter speech rainfall foliage
    glass glassware cattle poultry static noise machinery wood paper gravel sand snow hail
    """.split()  # noqa: SIM905
)
#: Nouns that are plural as they stand.
PLURAL_ONLY = frozenset(
    """
    people children men women geese mice cattle police teeth feet footsteps clothes
    """.split()  # noqa: SIM905
)

_IRREGULAR_PLURALS = {
    "man": "men",
    "woman": "women",
    "child": "children",
    "person": "people",
    "leaf": "leaves",
    "mouse": "mice",
    "goose": "geese",
    "sheep": "sheep",
    "foot": "feet",
    "tooth": "teeth",
    "puppy": "puppies",
    "baby": "babies",
    "kitty": "kitties",
    "lady": "ladies",
    "canine": "canines",
    "group of people": "groups of people",
}

_VOWELS = "aeiou"


def _doubles(base: str) -> bool:
    """Whether the last consonant doubles before -ing/-ed: one vowel, then one consonant
    (hum -> humming, step -> stepping; not bark, open, buzz, blow)."""
    if len(base) < 3 or sum(ch in _VOWELS for ch in base) != 1:
        return False
    a, b, c = base[-3:]
    return a not in _VOWELS and b in _VOWELS and c not in _VOWELS + "wxy"


_PARTICIPLES = {
    "ring": "rung",
    "sing": "sung",
    "blow": "blown",
    "hit": "hit",
    "run": "run",
    "speak": "spoken",
    "drive": "driven",
    "fall": "fallen",
    "break": "broken",
    "shake": "shaken",
    "tear": "torn",
    "cut": "cut",
    "shut": "shut",
    "go": "gone",
    "fly": "flown",
    "spin": "spun",
    "drink": "drunk",
    "strike": "struck",
    "go off": "gone off",
}


def inflect(base: str, form: str) -> str:
    """One form of a verb: ``"3sg"`` (barks), ``"ing"`` (barking), ``"part"`` (opened).

    ``"base"`` returns the base form (the plural present: "birds chirp"). Multi-word verbs
    inflect their first word ("go off" -> "goes off").
    """
    if " " in base and form != "part":
        head, rest = base.split(" ", 1)
        return f"{inflect(head, form)} {rest}"
    if form == "base":
        return base
    if form == "3sg":
        if base.endswith(("s", "sh", "ch", "x", "z", "o")):
            return base + "es"
        if base.endswith("y") and base[-2:-1] not in "aeiou":
            return base[:-1] + "ies"
        return base + "s"
    if form == "ing":
        if base.endswith("ie"):
            return base[:-2] + "ying"
        if base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
            return base[:-1] + "ing"
        if _doubles(base):
            return base + base[-1] + "ing"
        return base + "ing"
    if form == "part":
        if base in _PARTICIPLES:
            return _PARTICIPLES[base]
        if base.endswith("e"):
            return base + "d"
        if base.endswith("y") and base[-2:-1] not in "aeiou":
            return base[:-1] + "ied"
        if _doubles(base):
            return base + base[-1] + "ed"
        return base + "ed"
    raise ValueError(f"unknown verb form {form!r}")


def plural(noun: str) -> str:
    """The plural of a singular noun ("dog" -> "dogs", "man" -> "men")."""
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun in MASS_NOUNS or noun in PLURAL_ONLY:
        return noun
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith("f"):
        return noun[:-1] + "ves"
    return noun + "s"
