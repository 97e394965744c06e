"""The batch job itself (:func:`querysep.captions.job.run_job`), with in-process backends."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from querysep.captions import Answer, AnswerCache, OfflineBackend, PromptTemplate, load_template
from querysep.captions import job as job_module
from querysep.captions.errors import AugmentStopped, NoCaptionsError
from querysep.captions.job import run_job
from querysep.data.manifest import Clip
from querysep.errors import OutputError


def clips(*captions: str) -> list[Clip]:
    return [Clip(id=f"c{i}", audio=f"c{i}.wav", captions=[c]) for i, c in enumerate(captions)]


class OldBackend:
    """A user-written backend with the signature documented before ``stop`` was added."""

    name = "mine"
    model = "v0"

    def augment(
        self, caption: str, keywords: Sequence[str], template: PromptTemplate, num_captions: int
    ) -> Answer:
        return Answer(kept=[f"{caption} once more", f"{caption} again and again"], requests=1)


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_backend_without_stop_still_works(tmp_path: Path, concurrency: int):
    with AnswerCache(tmp_path / "cache.jsonl") as cache:
        out, summary = run_job(
            clips("a dog barks", "rain falls"),
            OldBackend(),
            load_template(),
            cache,
            concurrency=concurrency,
        )  # was a TypeError: unexpected keyword argument 'stop'
    assert out[0].augmented_captions == ["a dog barks once more", "a dog barks again and again"]
    assert summary.requests == 2


class EmptyBackend:
    name = "empty"
    model = "v0"

    def augment(self, caption, keywords, template, num_captions, *, stop=None) -> Answer:
        return Answer(requests=1)


def test_no_caption_at_all_counts_only_the_clips_asked_about(tmp_path: Path):
    manifest = clips("a dog barks", "rain falls")
    manifest[1].augmented_captions = ["rain keeps falling"]  # past --limit: left as it was
    with AnswerCache(tmp_path / "cache.jsonl") as cache, pytest.raises(NoCaptionsError):
        run_job(manifest, EmptyBackend(), load_template(), cache, limit=1)


def test_an_offline_caption_without_paraphrases_is_cached_and_final(tmp_path: Path):
    manifest = clips("!!!", "a dog barks")  # the rules cannot vary "!!!"
    for run in range(2):
        with AnswerCache(tmp_path / "cache.jsonl") as cache:
            out, summary = run_job(manifest, OfflineBackend(), load_template(), cache)
        assert summary.empty == 0 and summary.short == 1  # no "run the same command again"
        assert summary.cache_hits == (0, 2)[run]
        assert out[0].augmented_captions == [] and len(out[1].augmented_captions) == 5
        assert summary.no_caption == 1  # "no caption: 1" in the CLI's summary (was 0)
    # nothing to vary at all: an error (exit 2), but none that points at --model or --base-url
    with AnswerCache(tmp_path / "other.jsonl") as cache, pytest.raises(NoCaptionsError) as info:
        run_job(clips("!!!", "?"), OfflineBackend(), load_template(), cache)
    assert "offline paraphraser" in str(info.value) and "--model" not in str(info.value)


def test_a_cache_that_cannot_be_written_stops_the_job_before_any_request(tmp_path: Path):
    asked: list[str] = []

    class CountingBackend(OldBackend):
        def augment(self, caption, keywords, template, num_captions, *, stop=None) -> Answer:
            asked.append(caption)
            return super().augment(caption, keywords, template, num_captions)

    cache = AnswerCache(tmp_path / "sub" / "cache.jsonl")
    (tmp_path / "sub").write_text("a file where the cache's folder should be")
    with cache, pytest.raises(OutputError, match="cannot write cache"):
        run_job(clips("a dog barks"), CountingBackend(), load_template(), cache)
    assert asked == []  # was: every answer paid for, then lost


def test_a_job_that_got_no_answer_leaves_no_cache_file(tmp_path: Path):
    with AnswerCache(tmp_path / "cache.jsonl") as cache, pytest.raises(NoCaptionsError):
        run_job(clips("a dog barks"), EmptyBackend(), load_template(), cache)
    assert not (tmp_path / "cache.jsonl").exists()


def test_a_ctrl_c_while_threads_start_stops_the_ones_started(tmp_path: Path, monkeypatch):
    entered = threading.Event()
    finished: list[str] = []

    class WaitingBackend:
        name = "waiting"
        model = "v0"

        def augment(self, caption, keywords, template, num_captions, *, stop=None) -> Answer:
            entered.set()
            try:
                if stop is not None and stop.wait(5):
                    raise AugmentStopped("stopped")
                return Answer(kept=[f"{caption} once more"], requests=1)
            finally:
                finished.append(caption)

    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if not thread.name.startswith("augment-"):
            return real_start(thread)
        if started:  # Ctrl-C just before the second thread starts
            entered.wait(5)
            raise KeyboardInterrupt
        started.append(thread)
        return real_start(thread)

    monkeypatch.setattr(job_module.threading.Thread, "start", start)
    with AnswerCache(tmp_path / "cache.jsonl") as cache, pytest.raises(KeyboardInterrupt):
        run_job(clips("a dog barks", "rain falls"), WaitingBackend(), load_template(), cache,
                concurrency=2)  # fmt: skip
    # the thread started was told to stop and waited for (it was left waiting 5 s before)
    assert finished == ["a dog barks"] and not started[0].is_alive()
