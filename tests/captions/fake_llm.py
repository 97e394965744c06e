"""A local OpenAI-compatible chat-completions server for the caption tests.

It listens on 127.0.0.1 (a free port), answers ``POST /v1/chat/completions`` with
deterministic valid captions built from the prompt's ``Description:`` line, and can be told
to misbehave: :attr:`FakeLLM.plan` holds one action per coming request (``"429"``,
``"500"``, ``"slow"``, ``"malformed"``, ``"rulebreak"``, ``"badjson"``, ``"nochoices"``,
``"choicesdict"``, ``"badusage"``, ``"parts"``, ``"keycaption"``, ``"think"``, ``"html"``,
``"errorbody"``, ``"cut"``...: see ``do_POST``); an
empty plan means ``"ok"``. It checks the bearer key (:attr:`FakeLLM.key`; 401 when wrong)
and the model (404 when unknown), logs every request it receives and every one it answers, and with
:attr:`block_after` set holds any request beyond that many answers until :attr:`release` is
set, then drops it unanswered (used to kill a client mid-run).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = "sk-test-0123456789"
MODEL = "fake-model"
_ENDINGS = (
    "again and again",
    "close to the listener",
    "for a short while",
    "with a steady rhythm",
    "quite clearly",
    "over a quiet background",
    "from a short distance",
    "without a pause",
    "in a small room",
    "once more",
)


def ok_answer(caption: str, count: int, offset: int = 0) -> str:
    """``count`` numbered captions that pass every rule, different for each ``offset``."""
    base = caption.rstrip(".").lower()
    return "\n".join(
        f"{i + 1}. {base} {_ENDINGS[(offset + i) % len(_ENDINGS)]}" for i in range(count)
    )


def rule_breaking_answer(caption: str) -> str:
    """Five captions of which two are valid and three break a rule each."""
    base = caption.rstrip(".").lower()
    return "\n".join(
        [
            "Here are your captions:",
            f"1. {base} {_ENDINGS[0]}",
            f"2. {base}, which was heard outside",
            f"3. {caption}",
            f"4. {base} {_ENDINGS[1]}",
            "5. a dog barks in London at 5 pm",
        ]
    )


class FakeLLM:
    """The server; use as a context manager (see the module docstring)."""

    def __init__(self, *, slow_seconds: float = 1.0, key: str = KEY) -> None:
        self.key = key
        self.plan: deque[str] = deque()
        self.received: list[dict[str, Any]] = []
        self.answered: list[dict[str, Any]] = []
        self.block_after: int | None = None
        self.release = threading.Event()
        self.slow_seconds = slow_seconds
        self.echo_pad = 0  # "400echo": characters before the echoed Authorization header
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def answered_captions(self) -> list[str]:
        """The caption of each answered first request (re-asks left out)."""
        return [a["caption"] for a in self.answered if a["turn"] == 1]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None):
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "no such route"}})
                    return
                if self.headers.get("Authorization") != f"Bearer {fake.key}":
                    error = {"message": "Incorrect API key provided", "code": "invalid_api_key"}
                    self._send(401, {"error": error})
                    return
                if request.get("model") != MODEL:
                    error = {"message": "The model does not exist", "code": "model_not_found"}
                    self._send(404, {"error": error})
                    return
                users = [m["content"] for m in request["messages"] if m["role"] == "user"]
                found = re.search(r"^Description: (.*)$", users[0], re.MULTILINE)
                caption = found.group(1) if found else users[0]
                with fake.lock:
                    action = fake.plan.popleft() if fake.plan else "ok"
                    entry = {
                        "caption": caption,
                        "turn": len(users),
                        "action": action,
                        "messages": request["messages"],
                    }
                    fake.received.append(entry)
                    block = fake.block_after is not None and len(fake.answered) >= (
                        fake.block_after
                    )
                if block:
                    fake.release.wait(30)
                    self.close_connection = True
                    return
                if action == "429":
                    self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
                    return
                if action == "400":  # e.g. a prompt longer than the model's context
                    self._send(400, {"error": {"message": "context length exceeded"}})
                    return
                if action == "400echo":  # a proxy that quotes the request's key back
                    auth = self.headers.get("Authorization")
                    message = f"{'x' * fake.echo_pad} bad request with {auth}"
                    self._send(400, {"error": {"message": message}})
                    return
                if action == "408":
                    self._send(408, {"error": {"message": "request timeout"}})
                    return
                if action == "500":
                    self._send(500, {"error": {"message": "internal error"}})
                    return
                if action == "badjson":
                    self._send(200, b"this is not json")
                    return
                if action == "html":  # a proxy's page, as text/html
                    page = b"<html><body>502 Bad Gateway</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                if action == "errorbody":  # an error report sent with status 200
                    self._send(200, {"error": {"message": "the model is overloaded"}})
                    return
                if action == "cut":  # the connection closed halfway through the body
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b'{"id": "chatcmpl-test", "choi')
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if action == "nochoices":
                    self._send(200, {"id": "x", "object": "chat.completion", "choices": []})
                    return
                if action == "choicesdict":  # JSON, but not the shape of a chat completion
                    self._send(200, {"id": "x", "object": "chat.completion", "choices": {"a": 1}})
                    return
                if action == "slow":
                    time.sleep(fake.slow_seconds)
                if action in ("refusal", "null"):  # no caption at all, first turn or re-ask
                    content = "I'm sorry, I can't help with that." if action == "refusal" else None
                elif len(users) > 1:
                    wanted = re.search(r"Write (\d+) more", users[-1])
                    count = int(wanted.group(1)) if wanted else 5
                    content = ok_answer(caption, count, offset=5)
                elif action == "malformed":
                    content = "Sure! The audio has a dog and some barking in it."
                elif action == "echokey":  # an upstream error quoted as the answer
                    content = f"Upstream refused {self.headers.get('Authorization')}: try later."
                elif action == "keycaption":  # the key inside one of the numbered captions
                    content = ok_answer(caption, 5).replace(" again", f" {fake.key} again", 1)
                elif action == "rulebreak":
                    content = rule_breaking_answer(caption)
                elif action == "think":  # a reasoning model's numbered plan, then its answer
                    plan = "\n".join(f"{i}. plan step number {i}" for i in range(1, 6))
                    content = f"<think>\nLet me plan:\n{plan}\n</think>\n\n{ok_answer(caption, 5)}"
                elif action == "thinkcut":  # thinking cut off by the token limit
                    content = "<think>\n1. first I will describe the dog\n2. then the"
                else:
                    content = ok_answer(caption, 5)
                with fake.lock:
                    fake.answered.append({**entry, "content": content})
                message: dict[str, Any] = {"role": "assistant", "content": content}
                if action == "parts":  # the content as a list of text parts
                    half = len(content or "") // 2
                    message["content"] = [
                        {"type": "text", "text": (content or "")[:half]},
                        {"type": "text", "text": (content or "")[half:]},
                    ]
                usage: Any = {
                    "prompt_tokens": sum(len(u) for u in users) // 4,
                    "completion_tokens": len(content or "") // 4,
                    "total_tokens": 0,
                }
                if action == "badusage":
                    usage = {"prompt_tokens": "n/a", "completion_tokens": [1], "total_tokens": -1}
                reply = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": 0,
                    "model": MODEL,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    if action == "trickle":  # the whole answer over slow_seconds, a bit at a time
                        body = json.dumps(reply).encode()
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        for start in range(0, len(body), 32):
                            self.wfile.write(body[start : start + 32])
                            self.wfile.flush()
                            time.sleep(fake.slow_seconds * 32 / len(body))
                        return
                    self._send(200, reply)

        return Handler
