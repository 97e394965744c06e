"""The batch job behind ``querysep augment``: a manifest in, the same clips with
``augmented_captions`` out.

1. Every clip's captions (its labels as text when it has none) with its keywords (its
   labels when it has none) make the work items; identical ``(caption, keywords)`` pairs
   are asked once.
2. Items found in the answer cache (:mod:`querysep.captions.cache`) are not asked again;
   the others go to the backend, ``concurrency`` at a time, and each answer is written to
   the cache as soon as it exists. A language model's answer without a single usable
   caption (a refusal, an empty message) is not cached, so that the next run asks again;
   the offline paraphraser's always is (asking again would give the same).
3. When every item has been asked, each clip gets the kept captions of all its captions
   (duplicates and copies of its own captions left out) and the output manifest is written
   atomically. A failure before that, or a run in which no answer held a usable caption,
   writes no output; the cache keeps what was finished.
"""

from __future__ import annotations

import inspect
import math
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..data.manifest import Clip
from .backends import Answer, Backend
from .cache import AnswerCache, cache_key
from .errors import AugmentStopped, NoCaptionsError, RequestRefusedError
from .prompt import PromptTemplate, clip_keywords
from .validate import normalize

__all__ = ["Estimate", "Summary", "WorkItem", "estimate", "plan_items", "run_job"]

#: Output tokens assumed per caption by :func:`estimate`.
TOKENS_PER_CAPTION = 20


@dataclass(frozen=True)
class WorkItem:
    """One caption to augment, with the keywords sent along, its cache key and the id of
    the first clip that has it (to name in messages)."""

    caption: str
    keywords: tuple[str, ...]
    key: str
    clip_id: str = ""


@dataclass
class Summary:
    """What a run did (``requests``... count this run's work, not the cache's).

    Attributes:
        clips: Clips in the output; ``augmented_clips`` of them got augmented captions.
        items: Distinct captions to augment; ``cache_hits`` of them came from the cache.
        requests: Chat requests answered; ``retries`` and ``reasks`` as in
            :class:`~querysep.captions.backends.Answer`.
        rejected: Captions refused in this run's answers.
        short: Items (cached ones included) that have fewer captions than asked.
        empty: Items whose answer held no usable caption (not cached: asked again next run;
            the offline paraphraser's are cached and not counted here, only in ``short``
            and ``no_caption``).
        no_caption: Items (cached ones included) with no usable caption at all.
        tokens_in: Prompt tokens reported by the endpoint; ``tokens_out`` completion ones.
        captions_written: Augmented captions in the output, over all clips.
    """

    clips: int = 0
    augmented_clips: int = 0
    items: int = 0
    cache_hits: int = 0
    requests: int = 0
    retries: int = 0
    reasks: int = 0
    rejected: int = 0
    short: int = 0
    empty: int = 0
    no_caption: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    captions_written: int = 0


@dataclass
class Estimate:
    """What a run would send (:func:`estimate`): requests and approximate tokens."""

    items: int
    cache_hits: int
    requests: int
    tokens_in: int
    tokens_out: int


def plan_items(
    clips: Sequence[Clip], backend: Backend, template: PromptTemplate
) -> tuple[list[WorkItem], list[list[str]]]:
    """The distinct work items of ``clips``, and each clip's item keys in caption order."""
    items: dict[str, WorkItem] = {}
    per_clip: list[list[str]] = []
    for clip in clips:
        keywords = tuple(clip_keywords(clip))
        keys = []
        for caption in clip.texts():
            caption = " ".join(caption.split())
            if not caption:
                continue
            key = cache_key(backend.name, backend.model, template.text, caption, keywords)
            items.setdefault(key, WorkItem(caption, keywords, key, clip.id))
            keys.append(key)
        per_clip.append(keys)
    return list(items.values()), per_clip


def _asks_again(backend: Backend) -> bool:
    """Whether an answer without captions is worth asking again: not for the deterministic
    offline paraphraser, which would answer the same."""
    return backend.name != "offline"


def _finished(cache: AnswerCache, key: str, backend: Backend) -> bool:
    """Whether the cache holds a final answer for ``key``: one with captions, or any from a
    backend not worth asking again (an empty one from a language model is asked again)."""
    record = cache.get(key)
    return record is not None and (bool(record["kept"]) or not _asks_again(backend))


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def estimate(
    items: Sequence[WorkItem],
    cache: AnswerCache,
    template: PromptTemplate,
    *,
    backend: Backend,
    num_captions: int = 5,
) -> Estimate:
    """Requests and tokens a run would spend, sending nothing.

    Input tokens are the rendered prompt's characters / 4 (rounded up), output tokens
    ``num_captions * TOKENS_PER_CAPTION``; re-asks are not foreseen. The offline backend
    sends no request.
    """
    todo = [item for item in items if not _finished(cache, item.key, backend)]
    if backend.name == "offline":
        return Estimate(len(items), len(items) - len(todo), 0, 0, 0)
    tokens_in = sum(
        math.ceil(len(template.render(item.caption, list(item.keywords))) / 4) for item in todo
    )
    return Estimate(
        len(items),
        len(items) - len(todo),
        len(todo),
        tokens_in,
        len(todo) * num_captions * TOKENS_PER_CAPTION,
    )


def _record(item: WorkItem, backend: Backend, answer: Answer) -> dict[str, Any]:
    return {
        "key": item.key,
        "backend": backend.name,
        "model": backend.model,
        "caption": item.caption,
        "keywords": list(item.keywords),
        "kept": answer.kept,
        "rejected": [asdict(r) for r in answer.rejected],
        "requests": answer.requests,
        "retries": answer.retries,
        "reasks": answer.reasks,
        "tokens_in": answer.tokens_in,
        "tokens_out": answer.tokens_out,
    }


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="caption", desc="augment", file=sys.stderr, disable=not enabled)


def run_job(
    clips: Sequence[Clip],
    backend: Backend,
    template: PromptTemplate,
    cache: AnswerCache,
    *,
    num_captions: int = 5,
    concurrency: int = 1,
    limit: int | None = None,
    progress: bool = False,
) -> tuple[list[Clip], Summary]:
    """Augment the captions of ``clips`` (the first ``limit`` of them; all by default).

    Args:
        clips: The manifest's clips.
        backend: Where new captions come from.
        template: The prompt template.
        cache: Answers already paid for; new ones are added as they arrive.
        num_captions: Captions asked per caption.
        concurrency: Captions in flight at once (threads).
        limit: Augment only the first ``limit`` clips; the others are returned unchanged.
        progress: Show a progress bar on stderr.

    Returns:
        The clips with ``augmented_captions`` set, and the run's summary.

    Raises:
        NoCaptionsError: Items were asked, but no answer held a usable caption.
        QuerysepError: The backend failed for good (e.g. wrong key); in-flight answers are
            still cached, nothing else is asked.
        KeyboardInterrupt: Ctrl-C (or SIGTERM in the CLI). With ``concurrency`` > 1 the
            captions in flight stop before their next retry or re-ask, the answers that
            are complete by then are cached, and a second Ctrl-C leaves at once.
    """
    chosen = list(clips[:limit] if limit is not None else clips)
    items, per_clip = plan_items(chosen, backend, template)
    summary = Summary(clips=len(clips), items=len(items))
    todo = [item for item in items if not _finished(cache, item.key, backend)]
    summary.cache_hits = len(items) - len(todo)
    if todo:  # a cache that cannot be written stops the job before any answer is paid for
        cache.open()
    stop = threading.Event()
    lock = threading.Lock()
    empty: list[Answer] = []  # answers without a caption: not cached, asked again next run
    asks_again = _asks_again(backend)
    # a backend written for the older signature, without stop, is called without it
    pass_stop = _accepts_stop(backend)

    def work(item: WorkItem) -> None:
        if stop.is_set():
            return
        try:
            extra = {"stop": stop} if pass_stop else {}
            answer = backend.augment(item.caption, item.keywords, template, num_captions, **extra)
        except AugmentStopped:  # an incomplete answer is not cached: the next run asks again
            return
        except RequestRefusedError as exc:  # say which caption, so the user can act on it
            raise RequestRefusedError(
                f"{exc}; the caption of clip {item.clip_id!r} was {_shorten(item.caption)!r}: "
                "edit or drop it in the manifest and run again (the answers so far are cached)"
            ) from None
        if answer.kept or not asks_again:
            cache.add(_record(item, backend, answer))
        with lock:
            if not answer.kept and asks_again:
                empty.append(answer)
            summary.requests += answer.requests
            summary.retries += answer.retries
            summary.reasks += answer.reasks
            summary.rejected += len(answer.rejected)
            summary.tokens_in += answer.tokens_in
            summary.tokens_out += answer.tokens_out
            bar.update(1)

    with _progress(len(items), progress) as bar:
        bar.update(summary.cache_hits)
        if concurrency <= 1:
            for item in todo:
                work(item)
        else:
            _run_threads(work, todo, concurrency, stop)

    def kept(key: str) -> list[str]:
        record = cache.get(key)
        return record["kept"] if record is not None else []

    out = list(clips)
    for index, (clip, keys) in enumerate(zip(chosen, per_clip, strict=True)):
        augmented = _merge(clip, [kept(key) for key in keys])
        out[index] = replace(clip, augmented_captions=augmented)
        summary.augmented_clips += bool(augmented)
    summary.short = sum(len(kept(item.key)) < num_captions for item in items)
    no_caption = [item for item in items if not kept(item.key)]
    summary.empty = len(empty)
    summary.no_caption = len(no_caption)
    summary.captions_written = sum(len(c.augmented_captions) for c in out)
    # clips past --limit keep whatever captions they had: they say nothing of this run
    if no_caption and not any(c.augmented_captions for c in out[: len(chosen)]):
        said = next((r for a in empty for r in a.rejected), None)
        example = f" (the first: {_shorten(said.text)!r}, {said.reason})" if said else ""
        check = (
            "check --model, --base-url and the prompt template"
            if asks_again
            else "the offline paraphraser has no rewrite for them; try --backend openai"
        )
        raise NoCaptionsError(
            f"none of the {len(no_caption)} captions got a usable new caption{example}; "
            f"nothing was written ({check})"
        )
    return out, summary


def _run_threads(
    work: Callable[[WorkItem], None],
    todo: Sequence[WorkItem],
    concurrency: int,
    stop: threading.Event,
) -> None:
    """``work`` on each item, ``concurrency`` threads at a time, until done or ``stop``.

    The first failure sets ``stop`` and is raised once the other threads have finished
    what they were doing. On Ctrl-C in the calling thread, ``stop`` is set and the threads
    are waited for (their answers in flight still land); a second Ctrl-C leaves them
    behind: they are daemon threads, which do not keep the process alive.
    """
    queue = deque(todo)
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        while not stop.is_set():
            with lock:
                if not queue:
                    return
                item = queue.popleft()
            try:
                work(item)
            except BaseException as exc:
                with lock:
                    failures.append(exc)
                stop.set()
                return

    threads: list[threading.Thread] = []

    def join() -> None:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.1)  # short joins: Ctrl-C is seen at once

    try:  # started inside it: a Ctrl-C between two starts stops the ones started
        for i in range(min(concurrency, len(todo))):
            threads.append(threading.Thread(target=worker, name=f"augment-{i}", daemon=True))
            threads[-1].start()
        join()
    finally:  # on a failure or Ctrl-C: start nothing new, let running answers land
        stop.set()
        join()
    if failures:
        raise failures[0]


def _accepts_stop(backend: Backend) -> bool:
    """Whether ``backend.augment`` takes ``stop`` (a backend of an older version may not)."""
    try:
        parameters = inspect.signature(backend.augment).parameters.values()
    except (TypeError, ValueError):  # no signature to read: call it the documented way
        return True
    return any(p.name == "stop" or p.kind is p.VAR_KEYWORD for p in parameters)


def _merge(clip: Clip, captions: Sequence[list[str]]) -> list[str]:
    """The kept ``captions`` of each item, without repeats or copies of the clip's texts."""
    seen = {normalize(text) for text in clip.texts()}
    merged = []
    for texts in captions:
        for text in texts:
            key = normalize(text)
            if key not in seen:
                seen.add(key)
                merged.append(text)
    return merged
