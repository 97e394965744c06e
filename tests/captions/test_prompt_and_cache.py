"""The prompt template and the answer cache."""

from __future__ import annotations

import json

import pytest

from querysep.captions import AnswerCache, TemplateError, cache_key, clip_keywords, load_template
from querysep.captions.prompt import follow_up_prompt
from querysep.data.manifest import Clip
from querysep.errors import DataError

REPORT_PROMPT = (
    "I will give a description of an audio recording and tags associated with the audio "
    "recording. Generate 5 audio captions describing the sound events. Each audio caption "
    "should be one sentence with less than 20 words. Use grammatical subject-verb-object "
    "sentences. Do not include names of cities, countries, and persons. Do not include the "
    "time. Do not include recording device names. Do not write introductions or "
    'explanations. Do not use "heard", "recorded". Start each output sentence with its index.'
)


def test_default_template_is_the_report_prompt_word_for_word():
    template = load_template()
    assert template.text.startswith(REPORT_PROMPT + "\n")
    prompt = template.render("a dog barks", ["dog", "animal"])
    assert prompt == REPORT_PROMPT + "\nDescription: a dog barks\nTags: dog, animal\n"


def test_template_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text('Rewrite {caption} ({keywords}); JSON like {"a": 1} is kept.\n')
    template = load_template(path)
    assert template.render("rain", []) == 'Rewrite rain (none); JSON like {"a": 1} is kept.\n'
    assert template.sha256 != load_template().sha256


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("Rewrite these tags: {keywords}", "no {caption} placeholder"),
        ("Rewrite {caption} with {tags}", "unknown placeholder {tags}"),
        ("   \n", "is empty"),
    ],
)
def test_broken_templates(tmp_path, text, expect):
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(TemplateError, match=expect):
        load_template(path)


def test_missing_template(tmp_path):
    with pytest.raises(TemplateError, match="prompt template not found"):
        load_template(tmp_path / "nope.txt")


def test_keywords_or_labels():
    assert clip_keywords(Clip("a", "a.wav", keywords=["Dog", "bark"], labels=["dog"])) == [
        "Dog",
        "bark",
    ]
    assert clip_keywords(Clip("a", "a.wav", labels=["chirping_birds"])) == ["chirping birds"]


def test_follow_up_asks_for_the_missing_count_only():
    text = follow_up_prompt(2, ["a hound barks"], ['uses "heard"', 'uses "heard"'])
    assert "Write 2 more audio captions" in text
    assert "a hound barks" in text and text.count('uses "heard"') == 1


def test_cache_key_depends_on_every_part():
    base = ("openai", "gpt-4", "T {caption}", "a dog barks", ["dog"])
    keys = {cache_key(*base)}
    for i, other in enumerate(["offline", "gpt-4o", "U {caption}", "a dog", ["cat"]]):
        changed = list(base)
        changed[i] = other
        keys.add(cache_key(*changed))
    assert len(keys) == 6


def test_cache_round_trip_and_truncated_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    with AnswerCache(path) as cache:
        assert not path.exists()  # created on the first answer only
        cache.add({"key": "k1", "kept": ["a"]})
        cache.add({"key": "k2", "kept": ["b"]})
    with path.open("a") as handle:
        handle.write('{"key": "k3", "ke')
    cache = AnswerCache(path)
    assert cache.dropped_partial_line and set(cache.records) == {"k1", "k2"}
    cache.add({"key": "k3", "kept": ["c"]})
    cache.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["k1", "k2", "k3"]


@pytest.mark.parametrize(
    "text",
    [
        "my notes",
        '{"clip": "a.wav", "caption": "a dog"}\n{"clip": "b.wav"}',
        '{"other": 1, "x',
        '{"key": "k1"}\n',  # no kept captions: was a KeyError when the job read it
        '{"key": "k1", "kept": "abc"}\n',  # was taken for the captions "a", "b" and "c"
        '{"key": "k1", "kept": ["a", 2]}\n',
    ],
)
def test_a_file_that_is_not_a_cache_is_refused_and_left_as_it_was(tmp_path, text):
    path = tmp_path / "notes.txt"
    path.write_text(text)  # no final newline: it must not be taken for a cut-short record
    with pytest.raises(DataError, match=r"notes\.txt:\d is not a cache record"):
        AnswerCache(path)
    assert path.read_text() == text


def test_a_cut_short_line_is_cut_off_only_when_an_answer_is_added(tmp_path):
    path = tmp_path / "cache.jsonl"
    text = '{"key": "k1", "kept": ["a"]}\n{"key": "k2", "ke'
    path.write_text(text)
    cache = AnswerCache(path)  # a dry run opens it, and must leave no trace
    assert cache.dropped_partial_line and set(cache.records) == {"k1"}
    assert path.read_text() == text
    cache.add({"key": "k3", "kept": ["c"]})
    cache.close()
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["k1", "k3"]


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text('{"key": "k1", "kept": ["a"]}')
    with AnswerCache(path) as cache:
        assert set(cache.records) == {"k1"} and not cache.dropped_partial_line
        cache.add({"key": "k2", "kept": ["b"]})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["k1", "k2"]


def test_cache_corrupt_middle_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text('{"key": "k1", "kept": []}\n[1, 2]\n{"key": "k2", "kept": []}\n')
    with pytest.raises(DataError, match=r"cache\.jsonl:2 is not a cache record"):
        AnswerCache(path)
