"""Caption backends: an OpenAI-compatible chat endpoint, or the offline paraphraser.

Both turn one caption (and its keywords) into an :class:`Answer`: the captions kept, the
ones rejected with their reasons (:mod:`querysep.captions.validate`), and what it cost.

:class:`OpenAIBackend` talks to any chat-completions endpoint (OpenAI, vLLM, llama.cpp
server, Ollama) through the official ``openai`` client, with the client's own retries
turned off (``max_retries=0``) so that the loop here is the only one:

* HTTP 408, 409, 429, 5xx, timeouts, connection errors and unreadable responses are
  retried up to ``max_tries`` times in all, waiting ``backoff_base * 2**k`` seconds (at most
  ``backoff_max``) with random jitter (a uniform draw between half and all of it), or what
  a ``Retry-After`` header asks when that is longer (but again at most ``backoff_max``);
* HTTP 401/403 (wrong key), 404 (unknown model or route) and other 4xx fail at once (for
  the others, the job names the caption whose request was refused);
* an answer with too few valid captions is re-asked up to ``max_reasks`` times, asking only
  for the number still missing;
* a request that has not got its whole answer ``timeout`` seconds after it was sent is
  given up as a timeout (the client's own timeout bounds each wait for data, so a server
  that trickles its answer would otherwise hold a request for much longer);
* a ``stop`` event (Ctrl-C in the job) is checked before every request (retries and re-asks
  included, and after any rate-limit wait), and cuts short any wait (backoff, rate limit):
  a stopped caption ends with :class:`~querysep.captions.errors.AugmentStopped` within
  about one request's time, and no request starts once it is set.

The API key comes from ``QUERYSEP_LLM_API_KEY`` or ``OPENAI_API_KEY``; it is handed to the
client and nowhere else. It (and a password in the endpoint's address), when at least
:data:`MIN_SECRET_LENGTH` characters long, is masked out of any server message that is shown
and of the answer text that is kept as a rejection or sent back in a re-ask; a caption that
quotes it is refused (``quotes the API key``), never edited. The address is shown without
its user name, password and query (:func:`shown_url`).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ConfigError, QuerysepError
from .errors import (
    AugmentStopped,
    AuthenticationFailedError,
    BackendError,
    EndpointUnreachableError,
    RequestRefusedError,
    UnknownModelError,
)
from .paraphrase import paraphrase
from .prompt import PromptTemplate, follow_up_prompt
from .validate import Rejection, parse_numbered, strip_reasoning, validate_captions

__all__ = [
    "API_KEY_VARIABLES",
    "MAX_TIMEOUT",
    "MAX_TRIES",
    "MIN_SECRET_LENGTH",
    "Answer",
    "Backend",
    "OfflineBackend",
    "OpenAIBackend",
    "RateLimiter",
    "RetryPolicy",
    "api_key_from_env",
    "check_base_url",
    "shown_url",
]

#: Environment variables read for the API key, first found wins.
API_KEY_VARIABLES = ("QUERYSEP_LLM_API_KEY", "OPENAI_API_KEY")

#: Most attempts per request (:attr:`RetryPolicy.max_tries`).
MAX_TRIES = 100

#: Longest time one request may take, in seconds (:attr:`RetryPolicy.timeout`).
MAX_TIMEOUT = 3600.0

#: Shortest API key or address password taken for a secret. Shorter ones are placeholders
#: for a server that needs none (``x``, ``EMPTY``, ``ollama``): masking them would rewrite
#: ordinary words.
MIN_SECRET_LENGTH = 8


@dataclass
class Answer:
    """What a backend made of one caption.

    Attributes:
        kept: Valid captions, at most the number asked for.
        rejected: Refused captions (and unreadable answers) with the rule they broke.
        requests: Chat requests that got an answer.
        retries: Requests repeated after a 429, 5xx, timeout or connection error.
        reasks: Follow-up requests for missing captions.
        tokens_in: Prompt tokens, as the endpoint reported them.
        tokens_out: Completion tokens, as the endpoint reported them.
    """

    kept: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    reasks: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


class Backend(Protocol):
    """Anything that turns a caption into an :class:`Answer`."""

    name: str
    model: str

    def augment(
        self,
        caption: str,
        keywords: Sequence[str],
        template: PromptTemplate,
        num_captions: int,
        *,
        stop: threading.Event | None = None,
    ) -> Answer:
        """Write ``num_captions`` new captions for ``caption``; once ``stop`` is set, raise
        :class:`~querysep.captions.errors.AugmentStopped` rather than go on asking.

        ``stop`` is optional: the job calls an ``augment`` without it the older way.
        """
        ...


class OfflineBackend:
    """The deterministic rule-based paraphraser (:mod:`querysep.captions.paraphrase`).

    The template is not used (there is no language model to read it).
    """

    name = "offline"
    model = "rules-v1"

    def augment(
        self,
        caption: str,
        keywords: Sequence[str],
        template: PromptTemplate,
        num_captions: int,
        *,
        stop: threading.Event | None = None,
    ) -> Answer:
        """Paraphrase ``caption``; see :func:`~querysep.captions.paraphrase.paraphrase`."""
        return Answer(kept=paraphrase(caption, keywords, num_captions))


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request.

    Attributes:
        max_tries: Attempts in all (first one included) before giving up, 1 to
            :data:`MAX_TRIES`.
        backoff_base: First wait, in seconds; doubled after each failure.
        backoff_max: Longest wait, in seconds, also for a ``Retry-After`` header.
        timeout: Seconds to wait for one response, at most :data:`MAX_TIMEOUT`.

    Raises:
        ConfigError: A value out of those ranges, or not a finite number.
    """

    max_tries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_tries <= MAX_TRIES:
            raise ConfigError(f"max_tries must be 1 to {MAX_TRIES}, not {self.max_tries}")
        if not (math.isfinite(self.timeout) and 0 < self.timeout <= MAX_TIMEOUT):
            raise ConfigError(
                f"timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds, "
                f"not {self.timeout:g}"
            )
        for name in ("backoff_base", "backoff_max"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number of seconds >= 0, not {value:g}")

    def delay(self, failures: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after ``failures`` failed attempts (1, 2...), with jitter.

        A ``retry_after`` the server asked for is waited when longer, up to ``backoff_max``.
        """
        # 2**64 already exceeds any backoff_max: a larger power would only overflow
        full = min(self.backoff_max, self.backoff_base * 2.0 ** min(failures - 1, 64))
        wait = rng.uniform(full / 2, full)
        if retry_after is not None and math.isfinite(retry_after):
            wait = max(wait, min(retry_after, self.backoff_max))
        return wait


class RateLimiter:
    """Spaces request starts at least ``60 / per_minute`` seconds apart, across threads.

    Args:
        per_minute: Requests per minute (``None`` or 0: no limit).
    """

    def __init__(
        self,
        per_minute: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event | None = None) -> None:
        """Block until the next request may start (or, given one, ``stop`` is set)."""
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            if stop is not None:
                stop.wait(start - now)
            else:
                self._sleep(start - now)


def api_key_from_env() -> str | None:
    """The API key from the environment (see :data:`API_KEY_VARIABLES`), or None."""
    for name in API_KEY_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


@dataclass
class _Reply:
    text: str
    tokens_in: int
    tokens_out: int
    retries: int


class _UnreadableReplyError(ValueError):
    """A 200 answer without ``choices[0].message`` (a proxy's error page in JSON, say)."""


def _message_text(content: Any) -> str:
    """A message's text: a string, or the texts of a list of parts (``{"type": "text",
    "text": ...}``) joined; nothing (``None``) is the empty string."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            text = part.get("text") if isinstance(part, dict) else getattr(part, "text", None)
            if isinstance(text, str):
                texts.append(text)
        return "".join(texts)
    return str(content)


def _token_count(usage: Any, name: str) -> int:
    """``usage.<name>`` when it is a count (a non-negative integer), else 0."""
    value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 0


def _read_reply(response: Any) -> tuple[str, int, int]:
    """The message text and the prompt and completion token counts of a chat completion.

    Token counts the endpoint does not report as counts are 0.

    Raises:
        _UnreadableReplyError: The answer has no first choice with a message.
    """
    if isinstance(response, (str, bytes)):  # a body that is not JSON (a proxy's HTML page)
        text = response if isinstance(response, str) else response.decode("utf-8", "replace")
        raise _UnreadableReplyError(f"the answer is not JSON: {' '.join(text.split())[:80]!r}")
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        error = getattr(response, "error", None)  # a 200 answer that is an error report
        if isinstance(error, dict) and error.get("message"):
            raise _UnreadableReplyError(f"the endpoint answered with an error: {error['message']}")
        if error:
            raise _UnreadableReplyError(f"the endpoint answered with an error: {error}")
        if choices is None:
            raise _UnreadableReplyError("the answer is not a chat completion (no 'choices')")
        shape = "an empty list" if choices == [] else type(choices).__name__
        raise _UnreadableReplyError(f"no message in the answer (its choices are {shape})")
    try:
        text = _message_text(choices[0].message.content)
    except (TypeError, AttributeError, LookupError, ValueError):
        raise _UnreadableReplyError("no message in the answer's first choice") from None
    usage = getattr(response, "usage", None)
    return text, _token_count(usage, "prompt_tokens"), _token_count(usage, "completion_tokens")


def _http_client(openai: Any, seconds: float) -> Any:
    """The client ``openai`` would build, but whose requests end ``seconds`` after they were
    sent, however slowly the server sends its headers or its body.

    Each network wait of a request (connecting, the TLS handshake, every write and read) is
    given at most the time left to its deadline, and none starts after it, so a request ends
    by then (give or take the time to hand over what was read) with a timeout: the client's
    own ``timeout`` would bound each wait for data alone. What was read in time is kept.
    The deadline is kept per thread: the job's threads share one client.
    """
    base = openai.DefaultHttpxClient
    httpx_base = next(c for c in base.__mro__ if not c.__module__.startswith("openai"))
    httpx = importlib.import_module(httpx_base.__module__.split(".")[0])  # httpx or httpx2
    local = threading.local()

    @contextlib.contextmanager
    def until(deadline: float) -> Iterator[None]:
        previous = getattr(local, "deadline", None)
        local.deadline = deadline
        try:
            yield
        finally:
            local.deadline = previous

    def bounded(timeout: float | None, error: type[Exception]) -> float | None:
        """``timeout``, or less: the time left to this thread's deadline (error once none)."""
        deadline = getattr(local, "deadline", None)
        if deadline is None:
            return timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise error(f"no whole answer within {seconds:g} s")
        return left if timeout is None else min(timeout, left)

    def network_backend(core: Any, inner: Any) -> Any:
        """``inner`` (an httpcore network backend) with every wait bounded as above."""

        class Stream(core.NetworkStream):  # type: ignore[misc,name-defined]
            def __init__(self, stream: Any) -> None:
                self._stream = stream

            def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
                return self._stream.read(max_bytes, bounded(timeout, core.ReadTimeout))

            def write(self, buffer: bytes, timeout: float | None = None) -> None:
                self._stream.write(buffer, bounded(timeout, core.WriteTimeout))

            def close(self) -> None:
                self._stream.close()

            def start_tls(
                self, ssl_context: Any, server_hostname: Any = None, timeout: Any = None
            ) -> Any:
                timeout = bounded(timeout, core.ConnectTimeout)
                return Stream(self._stream.start_tls(ssl_context, server_hostname, timeout))

            def get_extra_info(self, info: str) -> Any:
                return self._stream.get_extra_info(info)

        class Backend(core.NetworkBackend):  # type: ignore[misc,name-defined]
            def connect_tcp(self, host: str, port: int, timeout: Any = None, **kwargs: Any) -> Any:
                timeout = bounded(timeout, core.ConnectTimeout)
                return Stream(inner.connect_tcp(host, port, timeout, **kwargs))

            def connect_unix_socket(self, path: str, timeout: Any = None, **kwargs: Any) -> Any:
                timeout = bounded(timeout, core.ConnectTimeout)
                return Stream(inner.connect_unix_socket(path, timeout, **kwargs))

            def sleep(self, seconds: float) -> None:
                inner.sleep(seconds)

        return Backend()

    class DeadlineStream(httpx.SyncByteStream):  # type: ignore[misc,name-defined]
        """A body read after ``send`` returned (``stream=True``), under the same deadline."""

        def __init__(self, stream: Any, deadline: float) -> None:
            self._stream = stream
            self._deadline = deadline

        def __iter__(self) -> Iterator[bytes]:
            chunks = iter(self._stream)
            while True:
                with until(self._deadline):
                    chunk = next(chunks, None)
                if chunk is None:
                    return
                yield chunk

        def close(self) -> None:
            self._stream.close()

    class DeadlineClient(base):  # type: ignore[misc,valid-type]
        def send(self, request: Any, *, stream: bool = False, **kwargs: Any) -> Any:
            deadline = time.monotonic() + seconds
            with until(deadline):
                response = super().send(request, stream=stream, **kwargs)
            if stream:
                response.stream = DeadlineStream(response.stream, deadline)
            return response

    client = DeadlineClient(timeout=seconds)
    # the connection pools of the client's transports (one per proxy too) get the bounded
    # network backend; httpx offers no public way to hand one over
    for transport in [client._transport, *client._mounts.values()]:
        pool = getattr(transport, "_pool", None)
        inner = getattr(pool, "_network_backend", None)
        if inner is not None:
            core = importlib.import_module(type(pool).__module__.split(".")[0])
            pool._network_backend = network_backend(core, inner)
    return client


def _userinfo(url: str, *, anywhere: bool = False) -> str:
    """The ``user:password`` part of ``url`` ("" when none).

    It is what comes before the last ``@`` of the host part (up to the first ``/``, ``?`` or
    ``#``); with ``anywhere``, before the last ``@`` of the whole address, for an address
    that does not parse, where a password may hold ``/``, ``?`` or ``#``.
    """
    rest = url.partition("://")[2] or url
    if not anywhere:
        rest = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return rest[: rest.rindex("@")] if "@" in rest else ""


def shown_url(url: str, *, anywhere: bool = False) -> str:
    """``url`` as it may be shown: without user name and password, query and fragment.

    Args:
        url: The address.
        anywhere: Take all before the last ``@`` of the address, not only of its host part,
            for the user name and password (see :func:`_userinfo`): for an address that does
            not parse, so that a password holding ``/``, ``?`` or ``#`` is not shown either.
    """
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    userinfo = _userinfo(url, anywhere=anywhere)
    if userinfo and rest.startswith(userinfo + "@"):
        rest = rest[len(userinfo) + 1 :]
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    return f"{head}{sep}{rest}"


def check_base_url(url: str, what: str = "base URL") -> str:
    """Check an OpenAI-compatible endpoint address before any client is built.

    Args:
        url: e.g. ``http://localhost:8000/v1``.
        what: How the error names it (``--base-url`` in the CLI).

    Returns:
        ``url``, unchanged.

    Raises:
        ConfigError: Not an http(s) address with a host and, if given, a numeric port (the
            message shows the address as :func:`shown_url` does).
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https"):
            problem = "it must start with http:// or https://"
        elif not parts.hostname:
            problem = "it names no host"
        else:
            return url
    secrets = _url_secrets(url) + _url_secrets(url, anywhere=True)
    raise ConfigError(
        f"{what} {shown_url(url, anywhere=True)!r} is not a usable address "
        f"({_hide(problem, secrets)}); e.g. http://localhost:8000/v1"
    )


def _url_secrets(url: str, *, anywhere: bool = False) -> list[str]:
    """The password of ``url`` with and without its user name, for :func:`_hide` (none for a
    password shorter than :data:`MIN_SECRET_LENGTH`; a user name alone is no secret)."""
    userinfo = _userinfo(url, anywhere=anywhere)
    password = userinfo.partition(":")[2]
    return [userinfo, password] if len(password) >= MIN_SECRET_LENGTH else []


def _hide(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret in it replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _shorten_hidden(text: str, secrets: Sequence[str], limit: int = 300) -> str:
    """``text`` on one line, secrets hidden, cut to ``limit`` characters (and ``...``).

    The secrets are hidden before the cut, and a start of one left at the cut is dropped.
    """
    text = _hide(" ".join(str(text).split()), secrets)
    if len(text) <= limit:
        return text
    text = text[:limit]
    for secret in secrets:
        for length in range(min(len(secret), len(text)), 0, -1):
            if text.endswith(secret[:length]):
                text = text[:-length]
                break
    return text + "..."


class OpenAIBackend:
    """Captions from an OpenAI-compatible chat-completions endpoint.

    Args:
        model: Model name, as the endpoint knows it (``gpt-4``, ``llama3``...).
        base_url: Endpoint root, e.g. ``http://localhost:8000/v1`` (``None``: OpenAI's).
        api_key: The key (default: :func:`api_key_from_env`; a placeholder for a
            ``base_url`` that needs none).
        retry: Retry, backoff and timeout settings.
        rate_limit: Requests per minute, over all threads (``None``: no limit).
        max_reasks: Follow-up requests for missing captions, per caption.
        temperature: Sampling temperature sent with each request (``None``: the server's).
        sleep: The function that waits when no ``stop`` event is given (tests pass a
            recorder); with one, waits are on the event.

    Raises:
        BackendError: No key for OpenAI's own endpoint.
        QuerysepError: The ``openai`` package is not installed.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: float | None = None,
        max_reasks: int = 2,
        temperature: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        try:
            import openai
        except ImportError:
            raise QuerysepError(
                "the openai backend needs the openai package: pip install 'querysep[llm]'"
            ) from None
        # Without base_url the client reads OPENAI_BASE_URL: checked the same way, and like
        # base_url it is taken for a server that may need no key.
        url, named = base_url, "base URL"
        if url is None and os.environ.get("OPENAI_BASE_URL"):
            url, named = os.environ["OPENAI_BASE_URL"], "OPENAI_BASE_URL"
        key = api_key if api_key is not None else api_key_from_env()
        if not key:
            if url is None:
                raise BackendError(
                    "no API key: set OPENAI_API_KEY (or QUERYSEP_LLM_API_KEY), or give "
                    "--base-url for a local server that needs none"
                )
            key = "no-key"  # local servers ignore it; the client insists on one
        self.model = model
        self.base_url = base_url
        self.retry = retry or RetryPolicy()
        self.limiter = RateLimiter(rate_limit, sleep=sleep)
        self.max_reasks = max_reasks
        self.temperature = temperature
        self._sleep = sleep
        self._rng = random.Random()
        self._openai = openai
        # what is masked, and the name a caption that quotes it is refused with
        self._named_secrets = [
            *([(key, "the API key")] if len(key) >= MIN_SECRET_LENGTH else []),
            *[(s, "the password of the address") for s in _url_secrets(url or "")],
        ]
        self._secrets = [secret for secret, _ in self._named_secrets]
        try:
            self._client = openai.OpenAI(
                api_key=key,
                base_url=None if url is None else check_base_url(url, named),
                max_retries=0,
                timeout=self.retry.timeout,
                http_client=_http_client(openai, self.retry.timeout),
            )
        except Exception as exc:  # httpx's InvalidURL for what urlsplit lets through
            if type(exc).__name__ != "InvalidURL":
                raise
            secrets = self._secrets + _url_secrets(url or "", anywhere=True)
            raise ConfigError(
                f"{named} {shown_url(url or '', anywhere=True)!r} is not a usable address "
                f"({_hide(str(exc), secrets)})"
            ) from None
        self.where = shown_url(str(self._client.base_url)).rstrip("/")

    def _mask(self, text: str) -> str:
        """A server's message as it may be shown: one line, no secret, at most 300 chars."""
        return _shorten_hidden(text, self._secrets)

    def _quotes(self, text: str) -> str | None:
        """Why ``text`` (a caption) is refused for quoting a secret, or None when it does not."""
        for secret, name in self._named_secrets:
            if secret in text:
                return f"quotes {name}"
        return None

    def _fatal(self, exc: Exception) -> BackendError | None:
        """The error to stop with for ``exc``, or None when it is worth retrying."""
        o = self._openai
        if isinstance(exc, o.AuthenticationError | o.PermissionDeniedError):
            return AuthenticationFailedError(
                f"the LLM endpoint {self.where} refused the API key (HTTP {exc.status_code}); "
                "check OPENAI_API_KEY / QUERYSEP_LLM_API_KEY"
            )
        if isinstance(exc, o.NotFoundError):
            return UnknownModelError(
                f"the LLM endpoint {self.where} has no model '{self.model}' or no chat "
                "completions route (HTTP 404); check --model and --base-url"
            )
        # 408 (request timeout), 409 (conflict) and 429 (rate limit) pass with time
        retried = (408, 409, 429)
        if (
            isinstance(exc, o.APIStatusError)
            and exc.status_code < 500
            and exc.status_code not in retried
        ):
            message = getattr(exc, "message", "") or str(exc)
            # the client's own prefix repeats the status the line already gives
            message = re.sub(r"^Error code: \d+ - ", "", message)
            return RequestRefusedError(
                f"the LLM endpoint {self.where} refused the request "
                f"(HTTP {exc.status_code}): {self._mask(message)}"
            )
        return None

    def _gave_up(self, exc: Exception, tries: int) -> BackendError:
        o = self._openai
        after = f"after {tries} tr{'y' if tries == 1 else 'ies'}"
        if isinstance(exc, o.RateLimitError):
            return BackendError(
                f"the LLM endpoint {self.where} still refuses with HTTP 429 (rate limit) "
                f"{after}; lower --rate-limit or --concurrency"
            )
        if isinstance(exc, o.APITimeoutError):
            what = f"no answer within {self.retry.timeout:g} s"
        elif isinstance(exc, o.APIConnectionError):
            cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else ""
            what = (
                "cannot connect"
                if cause in ("", "ConnectError", "ConnectTimeout")
                else f"the connection broke before the answer was complete ({cause})"
            )
        elif isinstance(exc, o.APIStatusError):
            what = f"{'server error ' if exc.status_code >= 500 else ''}HTTP {exc.status_code}"
        elif isinstance(exc, _UnreadableReplyError):
            what = f"unreadable response: {self._mask(str(exc))}"
        else:
            what = f"unreadable response ({type(exc).__name__})"
        return EndpointUnreachableError(f"LLM endpoint {self.where} failed {after}: {what}")

    @staticmethod
    def _retry_after(exc: Exception) -> float | None:
        response = getattr(exc, "response", None)
        value = response.headers.get("retry-after") if response is not None else None
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def _pause(self, seconds: float, stop: threading.Event | None) -> None:
        """Wait ``seconds``, on ``stop`` when given (raising once it is set)."""
        if stop is None:
            self._sleep(seconds)
        elif stop.wait(seconds):
            raise AugmentStopped("stopped")

    def chat(
        self, messages: list[dict[str, str]], *, stop: threading.Event | None = None
    ) -> _Reply:
        """One chat completion, retried as the module docstring says.

        Raises:
            BackendError: A failure that retrying will not mend, or tries exhausted.
            AugmentStopped: ``stop`` was set before a request (the first one included) or
                during a wait.
        """
        o = self._openai
        # ValueError: a body that is not JSON; _UnreadableReplyError: JSON without a message in it.
        # A mistake of ours in building the request is not among them: it is raised at once.
        retryable = (
            o.APIStatusError,
            o.APIConnectionError,
            o.APIResponseValidationError,
            ValueError,
        )
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        for attempt in range(1, self.retry.max_tries + 1):
            self.limiter.wait(stop)
            if stop is not None and stop.is_set():  # set during the wait, or before the call
                raise AugmentStopped("stopped")
            try:
                response = self._client.chat.completions.create(**kwargs)
                text, tokens_in, tokens_out = _read_reply(response)
            except retryable as exc:
                fatal = self._fatal(exc)
                if fatal is not None:
                    raise fatal from None
                if attempt == self.retry.max_tries:
                    raise self._gave_up(exc, attempt) from None
                self._pause(self.retry.delay(attempt, self._rng, self._retry_after(exc)), stop)
                continue
            return _Reply(text, tokens_in, tokens_out, attempt - 1)
        raise AssertionError("unreachable")  # pragma: no cover

    def augment(
        self,
        caption: str,
        keywords: Sequence[str],
        template: PromptTemplate,
        num_captions: int,
        *,
        stop: threading.Event | None = None,
    ) -> Answer:
        """Ask for ``num_captions`` captions; re-ask for the missing ones, bounded.

        Raises:
            AugmentStopped: ``stop`` was set before a request.
        """
        answer = Answer()
        messages = [{"role": "user", "content": template.render(caption, list(keywords))}]
        for round_ in range(self.max_reasks + 1):
            reply = self.chat(messages, stop=stop)
            # an answer may quote the request's key (an upstream error passed on as text): a
            # caption that does is refused (not edited), and the key is masked in what is
            # kept of the answer (rejections: the cache) or sent back in a re-ask
            hidden = _hide(reply.text, self._secrets)
            # what a re-ask quotes: never empty (some endpoints refuse an empty message)
            shown = _hide(strip_reasoning(reply.text), self._secrets).strip() or "(no captions)"
            answer.requests += 1
            answer.reasks += round_ > 0
            answer.retries += reply.retries
            answer.tokens_in += reply.tokens_in
            answer.tokens_out += reply.tokens_out
            missing = num_captions - len(answer.kept)
            parsed = parse_numbered(reply.text)
            if not parsed:
                answer.rejected.append(Rejection(hidden.strip(), "no numbered captions"))
            quoting = [
                Rejection(_hide(text, self._secrets), reason)
                for text in parsed
                if (reason := self._quotes(text))
            ]
            parsed = [text for text in parsed if self._quotes(text) is None]
            checked = validate_captions(parsed, caption, answer.kept)
            checked.rejected[:0] = quoting
            answer.kept += checked.kept[:missing]
            answer.rejected += checked.rejected
            answer.rejected += [Rejection(t, "more than asked") for t in checked.kept[missing:]]
            missing = num_captions - len(answer.kept)
            if missing <= 0:
                break
            problems = [r.reason for r in checked.rejected] or (
                ["no numbered captions"] if not parsed else ["too few captions"]
            )
            messages = [
                *messages,
                {"role": "assistant", "content": shown},
                {"role": "user", "content": follow_up_prompt(missing, answer.kept, problems)},
            ]
        return answer
