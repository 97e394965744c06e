"""The openai backend over real HTTP, against the local fake server (tests/captions/fake_llm.py)."""

from __future__ import annotations

import contextlib
import json
import math
import random
import socket
import threading
import time

import pytest

from querysep.captions import (
    AugmentStopped,
    AuthenticationFailedError,
    BackendError,
    EndpointUnreachableError,
    OpenAIBackend,
    RequestRefusedError,
    RetryPolicy,
    UnknownModelError,
    load_template,
)
from querysep.captions.backends import shown_url
from querysep.captions.validate import check_caption, parse_numbered
from querysep.errors import ConfigError

from .fake_llm import KEY, MODEL, FakeLLM, ok_answer

pytest.importorskip("openai")

CAPTION = "a dog barks"
FAST = RetryPolicy(max_tries=4, backoff_base=0.01, backoff_max=0.05, timeout=2.0)


@pytest.fixture
def server():
    with FakeLLM(slow_seconds=1.0) as fake:
        yield fake


def backend(server: FakeLLM, *, key: str = KEY, model: str = MODEL, **kwargs) -> OpenAIBackend:
    kwargs.setdefault("retry", FAST)
    return OpenAIBackend(model, server.url, api_key=key, **kwargs)


def augment(llm: OpenAIBackend, caption: str = CAPTION):
    return llm.augment(caption, ["dog", "animal"], load_template(), 5)


def test_plain_answer(server):
    answer = augment(backend(server))
    assert len(answer.kept) == 5 and answer.rejected == []
    assert (answer.requests, answer.retries, answer.reasks) == (1, 0, 0)
    assert answer.tokens_in > 0 and answer.tokens_out > 0
    assert all(check_caption(c, CAPTION) is None for c in answer.kept)
    prompt = server.received[0]
    assert prompt["caption"] == CAPTION


@pytest.mark.parametrize("failure", ["408", "429", "500", "badjson", "nochoices", "choicesdict"])
def test_transient_failures_are_retried_with_growing_backoff(server, failure):
    waits: list[float] = []
    server.plan.extend([failure, failure])
    answer = augment(backend(server, sleep=waits.append))
    assert len(answer.kept) == 5
    assert answer.retries == 2 and answer.requests == 1
    assert len(server.received) == 3
    # jittered exponential backoff: wait k lies in [base * 2**k / 2, base * 2**k]
    assert 0.005 <= waits[0] <= 0.01 and 0.01 <= waits[1] <= 0.02


def test_backoff_never_overflows_and_retry_after_is_capped():
    rng = random.Random(0)
    assert RetryPolicy(backoff_base=0.0).delay(1100, rng) == 0  # was an OverflowError
    assert 30 <= RetryPolicy(backoff_base=1).delay(5000, rng) <= 60
    assert RetryPolicy(backoff_base=0).delay(1, rng, retry_after=120) == 60  # at most backoff_max
    assert RetryPolicy(backoff_base=0).delay(1, rng, retry_after=math.nan) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", math.inf),
        ("timeout", 1e308),
        ("timeout", math.nan),
        ("timeout", 0),
        ("max_tries", 0),
        ("max_tries", 1100),
        ("backoff_base", math.inf),
        ("backoff_max", math.nan),
    ],
)
def test_retry_policy_refuses_unusable_values(field, value):
    with pytest.raises(ConfigError, match=field):
        RetryPolicy(**{field: value})


def test_unreadable_answers_name_the_problem_when_tries_run_out(server):
    server.plan.extend(["nochoices"] * FAST.max_tries)
    with pytest.raises(EndpointUnreachableError, match="unreadable response: no message") as exc:
        augment(backend(server, sleep=lambda s: None))
    assert len(server.received) == FAST.max_tries
    # the shape is said in words, not as the name of a Python exception
    assert str(exc.value).endswith("no message in the answer (its choices are an empty list)")
    server.plan.extend(["choicesdict"] * FAST.max_tries)
    with pytest.raises(EndpointUnreachableError, match=r"\(its choices are dict\)$"):
        augment(backend(server, sleep=lambda s: None))


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        ("html", "the answer is not JSON: '<html><body>502 Bad Gateway</body></html>'"),
        ("errorbody", "the endpoint answered with an error: the model is overloaded"),
        ("cut", "the connection broke before the answer was complete"),
    ],
)
def test_a_broken_answer_is_named_for_what_it_is(server, failure, said):
    server.plan.extend([failure] * FAST.max_tries)
    with pytest.raises(EndpointUnreachableError) as exc:
        augment(backend(server, sleep=lambda s: None))
    assert said in str(exc.value)  # was "(its choices are NoneType)" / "cannot connect"
    assert len(server.received) == FAST.max_tries


def test_a_reasoning_models_thinking_is_not_taken_for_captions(server):
    server.plan.append("think")
    answer = augment(backend(server))
    assert answer.kept == parse_numbered(ok_answer(CAPTION, 5)) and answer.rejected == []
    server.plan.extend(["thinkcut", "ok"])  # cut off while thinking: asked again
    answer = augment(backend(server))
    assert len(answer.kept) == 5 and not any("dog" in c and "describe" in c for c in answer.kept)
    assert [r.reason for r in answer.rejected] == ["no numbered captions"]
    # the re-ask quotes the answer without the thinking, and never as an empty message
    assert server.received[-1]["messages"][1]["content"] == "(no captions)"


def test_unreadable_token_counts_count_as_zero(server):
    server.plan.append("badusage")  # "prompt_tokens": "n/a", "completion_tokens": [1]
    answer = augment(backend(server))
    assert len(answer.kept) == 5 and (answer.tokens_in, answer.tokens_out) == (0, 0)


def test_content_given_as_text_parts_is_joined(server):
    server.plan.append("parts")  # [{"type": "text", "text": ...}, ...], split mid-line
    answer = augment(backend(server))
    assert len(answer.kept) == 5 and answer.rejected == []
    assert (answer.requests, answer.reasks) == (1, 0)


def test_a_mistake_in_building_the_request_is_not_retried(server):
    llm = backend(server, sleep=lambda s: None)
    calls: list[dict] = []

    def broken_create(**kwargs):  # what a wrong keyword argument to the client raises
        calls.append(kwargs)
        raise TypeError("create() got an unexpected keyword argument 'temprature'")

    llm._client.chat.completions.create = broken_create
    with pytest.raises(TypeError, match="temprature"):
        augment(llm)
    assert len(calls) == 1


def test_slow_response_times_out_and_is_retried(server):
    server.plan.append("slow")
    retry = RetryPolicy(max_tries=3, backoff_base=0.01, backoff_max=0.01, timeout=0.3)
    answer = augment(backend(server, retry=retry))
    assert len(answer.kept) == 5 and answer.retries == 1


def test_a_trickling_answer_is_cut_off_at_the_timeout(server):
    server.slow_seconds = 2.0  # every read gets data well within the timeout
    server.plan.append("trickle")
    retry = RetryPolicy(max_tries=3, backoff_base=0.01, backoff_max=0.01, timeout=0.5)
    start = time.monotonic()
    answer = augment(backend(server, retry=retry))
    assert len(answer.kept) == 5 and answer.retries == 1
    assert time.monotonic() - start < 1.8


class _StopOnRequest(list):
    """``FakeLLM.received`` that sets ``stop`` as a request comes in (a Ctrl-C meanwhile)."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    def append(self, item) -> None:
        super().append(item)
        self.stop.set()


@pytest.mark.parametrize("failure", ["500", "malformed"])
def test_a_stop_ends_before_the_next_retry_or_reask(server, failure):
    server.plan.extend([failure] * 5)
    stop = threading.Event()
    server.received = _StopOnRequest(stop)  # as the job does on Ctrl-C
    retry = RetryPolicy(max_tries=5, backoff_base=30, backoff_max=60, timeout=2.0)
    start = time.monotonic()
    with pytest.raises(AugmentStopped):
        backend(server, retry=retry).augment(CAPTION, ["dog"], load_template(), 5, stop=stop)
    assert len(server.received) == 1 and time.monotonic() - start < 5


def test_no_request_starts_once_stop_is_set(server):
    stop = threading.Event()
    stop.set()
    with pytest.raises(AugmentStopped):
        backend(server).augment(CAPTION, ["dog"], load_template(), 5, stop=stop)
    assert server.received == []


def test_a_stop_during_a_rate_limit_wait_sends_no_new_request(server):
    llm = backend(server, rate_limit=6)  # one request start every 10 s
    stop = threading.Event()
    outcomes: list[str] = []

    def caption(index: int) -> None:
        try:
            llm.augment(f"a dog barks {index}", ["dog"], load_template(), 5, stop=stop)
            outcomes.append("done")
        except AugmentStopped:
            outcomes.append("stopped")

    threads = [threading.Thread(target=caption, args=(i,)) for i in range(3)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    while len(server.answered) < 1 and time.monotonic() - start < 5:
        time.sleep(0.01)
    time.sleep(0.2)  # the other two are waiting for the rate limiter
    stop.set()
    for thread in threads:
        thread.join(10)
    assert len(server.received) == 1
    assert sorted(outcomes) == ["done", "stopped", "stopped"]
    assert time.monotonic() - start < 5


def _trickling_server(gap: float, body_too: bool = False) -> tuple[socket.socket, str]:
    """A raw HTTP server that sends a valid answer's headers one byte every ``gap`` seconds
    (and with ``body_too`` its body as well); returns its socket and base URL."""
    content = ok_answer(CAPTION, 5)
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": MODEL,
                       "choices": [choice]}).encode()  # fmt: skip
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nX-Pad: %s\r\n\r\n" % (len(body), b"a" * 40)
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            for data in (head + body) if body_too else head:
                conn.sendall(bytes([data]))
                time.sleep(gap)
            conn.sendall(b"" if body_too else body)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


@pytest.mark.parametrize("body_too", [False, True])
def test_trickling_headers_are_cut_off_at_the_timeout(body_too):
    listener, url = _trickling_server(0.05, body_too)  # ~100 header bytes: 5 s or more
    retry = RetryPolicy(max_tries=1, timeout=1.0)
    start = time.monotonic()
    with listener, pytest.raises(EndpointUnreachableError, match="no answer within 1 s"):
        augment(OpenAIBackend(MODEL, url, api_key=KEY, retry=retry))
    assert time.monotonic() - start < 1.5


def test_an_answer_slower_than_each_read_but_in_time_is_kept():
    listener, url = _trickling_server(0.002)  # headers within ~0.2 s, body at once
    with listener:
        answer = augment(OpenAIBackend(MODEL, url, api_key=KEY, retry=FAST))
    assert len(answer.kept) == 5


def test_a_stop_cuts_a_backoff_wait_short(server):
    server.plan.extend(["500"] * 5)
    stop = threading.Event()
    retry = RetryPolicy(max_tries=5, backoff_base=30, backoff_max=60, timeout=2.0)
    threading.Timer(0.5, stop.set).start()
    start = time.monotonic()
    with pytest.raises(AugmentStopped):
        backend(server, retry=retry).augment(CAPTION, ["dog"], load_template(), 5, stop=stop)
    assert len(server.received) == 1 and time.monotonic() - start < 5


def test_tries_are_bounded(server):
    server.plan.extend(["500"] * 10)
    with pytest.raises(EndpointUnreachableError, match="after 4 tries: server error HTTP 500"):
        augment(backend(server))
    assert len(server.received) == 4


def test_rate_limit_exhausted_says_so(server):
    server.plan.extend(["429"] * 10)
    with pytest.raises(BackendError, match="429") as info:
        augment(backend(server))
    assert "--rate-limit" in str(info.value)


def test_malformed_answer_is_reasked(server):
    server.plan.append("malformed")
    answer = augment(backend(server))
    assert len(answer.kept) == 5
    assert (answer.requests, answer.reasks) == (2, 1)
    assert [r.reason for r in answer.rejected] == ["no numbered captions"]
    assert [r["turn"] for r in server.received] == [1, 2]


def test_rule_breaking_answer_is_reasked_for_the_missing_count_only(server):
    server.plan.append("rulebreak")
    answer = augment(backend(server))
    reasons = sorted(r.reason for r in answer.rejected)
    assert reasons == ["copies the input", "names a place", 'uses "heard"']
    assert len(answer.kept) == 5 and answer.reasks == 1
    # the follow-up asked for exactly the 3 missing captions and named the broken rules
    follow_up = server.answered[1]["content"].splitlines()
    assert len(follow_up) == 3
    assert len(set(answer.kept)) == 5


def test_reasks_are_bounded(server):
    server.plan.extend(["malformed"] * 5)
    answer = augment(backend(server, max_reasks=1))
    assert answer.requests == 2 and answer.reasks == 1
    assert len(answer.kept) == 5  # the follow-up of the fake server is always valid
    server.plan.clear()


def test_wrong_key_fails_at_once_without_showing_the_key(server):
    secret = "sk-wrong-SECRET-abcdef"
    with pytest.raises(AuthenticationFailedError, match="refused the API key") as info:
        augment(backend(server, key=secret))
    assert secret not in str(info.value)
    assert len(server.received) == 0  # refused before any caption was logged


def test_a_refusal_that_quotes_the_key_never_shows_any_of_it(server):
    llm = backend(server)
    for pad in range(270, 300):  # the message is cut short near 300 characters
        server.echo_pad = pad
        server.plan.append("400echo")
        with pytest.raises(RequestRefusedError, match="HTTP 400") as info:
            augment(llm)
        assert "sk-" not in str(info.value), str(info.value)[-40:]


def test_a_key_quoted_in_an_answer_is_masked_in_what_is_kept_and_sent_back(server):
    server.plan.append("echokey")
    answer = augment(backend(server))
    assert len(answer.kept) == 5 and answer.reasks == 1
    assert "Upstream refused Bearer ***" in answer.rejected[0].text
    assert KEY not in repr(answer)
    assert KEY not in repr(server.received[1]["messages"])  # the re-ask quotes the answer


def test_a_caption_quoting_the_key_is_refused_not_edited(server):
    server.plan.append("keycaption")
    answer = augment(backend(server))
    assert len(answer.kept) == 5 and answer.reasks == 1
    assert [r.reason for r in answer.rejected] == ["quotes the API key"]
    assert "***" in answer.rejected[0].text and KEY not in repr(answer)
    assert all("***" not in text for text in answer.kept)
    assert KEY not in repr(server.received[1]["messages"])


@pytest.mark.parametrize("key", ["x", "ollama", "EMPTY", "dummy"])
def test_a_short_placeholder_key_leaves_captions_alone(key):
    caption = "a fox and an ox box next to a taxi"  # holds "x", like many captions
    with FakeLLM(key=key) as fake:
        fake.plan.append("echokey")  # even a quoted placeholder is no secret
        answer = augment(OpenAIBackend(MODEL, fake.url, api_key=key, retry=FAST), caption)
    sent = [line.split(". ", 1)[1] for line in ok_answer(caption, 5, offset=5).splitlines()]
    assert answer.kept == sent  # was "a fo*** and an o*** bo*** ne***t to a ta***i ..."
    assert [r.text for r in answer.rejected] == [f"Upstream refused Bearer {key}: try later."]


def test_a_user_name_or_a_short_password_in_the_address_is_no_secret(server):
    for userinfo in ("dog", "dog:pw"):
        url = server.url.replace("http://", f"http://{userinfo}@")
        llm = OpenAIBackend(MODEL, url, api_key=KEY, retry=FAST)
        assert llm._secrets == [KEY]  # "dog" was masked in "a dog barks at the doghouse"


def test_an_at_sign_in_the_path_is_no_user_name():
    assert shown_url("http://localhost:8000/v1/@x") == "http://localhost:8000/v1/@x"
    assert shown_url("http://me:pw@localhost:8000/v1/@x?k=1") == "http://localhost:8000/v1/@x"
    llm = OpenAIBackend(MODEL, "http://localhost:8000/v1/@x", api_key=KEY)
    assert llm.where == "http://localhost:8000/v1/@x"
    # an address that does not parse: all before the last "@" is hidden
    with pytest.raises(ConfigError) as info:
        OpenAIBackend(MODEL, "http://me:pw/SECRET@host:99999/v1", api_key=KEY)
    assert "SECRET" not in str(info.value) and "host:99999/v1" in str(info.value)


def test_a_password_in_the_address_is_never_shown(server, monkeypatch):
    secret_url = server.url.replace("http://", "http://me:pw-SECRET@") + "?token=Q-SECRET"
    with pytest.raises(UnknownModelError) as info:  # the fake server ignores the password
        augment(OpenAIBackend("gpt-9", secret_url, api_key=KEY, retry=FAST))
    assert "SECRET" not in str(info.value) and "127.0.0.1" in str(info.value)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = f"http://me:pw-SECRET@127.0.0.1:{port}/v1"
    with pytest.raises(EndpointUnreachableError) as info:
        augment(OpenAIBackend(MODEL, closed, api_key=KEY, retry=FAST, sleep=lambda s: None))
    assert "SECRET" not in str(info.value) and f"127.0.0.1:{port}/v1" in str(info.value)
    for url in ("http://me:pw-SECRET@host:99999/v1", "ftp://me:pw-SECRET@host/v1"):
        with pytest.raises(ConfigError) as info:
            OpenAIBackend(MODEL, url, api_key=KEY)
        assert "SECRET" not in str(info.value)


def test_unknown_model_fails_at_once(server):
    with pytest.raises(UnknownModelError, match="no model 'gpt-9'"):
        augment(backend(server, model="gpt-9"))


def test_closed_port_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    waits: list[float] = []
    llm = OpenAIBackend(
        MODEL, f"http://127.0.0.1:{port}/v1", api_key=KEY, retry=FAST, sleep=waits.append
    )
    with pytest.raises(EndpointUnreachableError, match="after 4 tries: cannot connect"):
        augment(llm)
    assert len(waits) == 3


def test_no_key_for_openai_itself(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("QUERYSEP_LLM_API_KEY", raising=False)
    with pytest.raises(BackendError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4")


def test_no_key_needed_with_openai_base_url(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("QUERYSEP_LLM_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)  # as --base-url: a local server
    llm = OpenAIBackend(MODEL, retry=FAST)
    with pytest.raises(AuthenticationFailedError):  # the fake server wants its key
        augment(llm)
    assert server.received == []


def test_key_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("QUERYSEP_LLM_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-other")
    llm = OpenAIBackend(MODEL, server.url, retry=FAST)
    assert len(augment(llm).kept) == 5


def test_addresses_are_checked_before_a_client_is_built(server, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for url, problem in (
        ("http://host:port/v1", "Port could not be cast"),  # was an httpx traceback
        ("http://host:99999/v1", "Port out of range"),
        ("http:///v1", "it names no host"),
        ("ftp://host/v1", "it must start with http:// or https://"),
    ):
        with pytest.raises(
            ConfigError, match=f"base URL '{url}' is not a usable address .{problem}"
        ):
            OpenAIBackend(MODEL, url, api_key=KEY)
    # the client's own fallback, OPENAI_BASE_URL, is checked the same way
    monkeypatch.setenv("OPENAI_BASE_URL", "http://host:99999/v1")
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL 'http://host:99999/v1' is not"):
        OpenAIBackend(MODEL, api_key=KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)  # a good one is used
    assert len(augment(OpenAIBackend(MODEL, api_key=KEY, retry=FAST)).kept) == 5
