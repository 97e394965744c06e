"""``querysep augment`` end to end, in subprocesses, against the local fake server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from querysep.data.manifest import Clip, read_manifest, write_manifest

from .fake_llm import KEY, MODEL, FakeLLM

pytest.importorskip("openai")

SRC = Path(__file__).resolve().parents[2] / "src"
CAPTIONS = [
    "a dog barks",
    "rain falls on a roof",
    "a man speaks while a car passes by",
    "birds chirp in the distance",
    "a door creaks open",
    "a baby cries",
]


def manifest(folder: Path) -> Path:
    """Seven clips, nine captions, eight distinct (caption, keywords) pairs."""
    clips = [
        Clip(id=f"c{i}", audio=f"c{i}.wav", captions=[text], labels=[f"class{i}"])
        for i, text in enumerate(CAPTIONS)
    ]
    clips[0].captions.append("barking of a dog")
    clips.append(Clip(id="dup", audio="dup.wav", captions=["a dog barks"], labels=["class0"]))
    clips.append(Clip(id="lab", audio="lab.wav", labels=["chirping_birds"]))
    path = folder / "manifest.jsonl"
    write_manifest(clips, path)
    return path


def command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "querysep", "augment", *map(str, args)]


def env(key: str | None = KEY) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if "API_KEY" not in k}
    out.update(PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1")
    if key is not None:
        out["OPENAI_API_KEY"] = key
    return out


def run(*args: str | Path, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), env=env(key), capture_output=True, text=True, timeout=120)


def openai_args(server: FakeLLM, src: Path, out: Path, *extra: str) -> list[str | Path]:
    return [
        src,
        "-o",
        out,
        "--backend",
        "openai",
        "--base-url",
        server.url,
        "--model",
        MODEL,
        "--backoff",
        "0.01",
        "--timeout",
        "5",
        "--no-progress",
        *extra,
    ]


def one_error_line(result: subprocess.CompletedProcess[str], expect: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("querysep: error: ") and expect in lines[0], lines[0]


def test_offline_backend(tmp_path):
    src = manifest(tmp_path)
    result = run(src, "-o", tmp_path / "out.jsonl", "--backend", "offline")
    assert result.returncode == 0, result.stderr
    clips = read_manifest(tmp_path / "out.jsonl")
    # two captions give up to 10 (repeats and copies of its own captions left out)
    assert 5 < len(clips[0].augmented_captions) <= 10
    assert len({c.lower() for c in clips[0].augmented_captions}) == len(clips[0].augmented_captions)
    assert [len(c.augmented_captions) for c in clips[1:]] == [5] * 7
    assert clips[6].augmented_captions == clips[0].augmented_captions[:5]
    again = run(
        src,
        "-o",
        tmp_path / "again.jsonl",
        "--backend",
        "offline",
        "--cache",
        tmp_path / "other.jsonl",
    )
    assert again.returncode == 0
    assert read_manifest(tmp_path / "again.jsonl") == clips  # deterministic


def test_openai_backend_dedupes_and_reports(tmp_path):
    src = manifest(tmp_path)
    with FakeLLM() as server:
        server.plan.extend(["429", "ok", "rulebreak"])
        result = run(*openai_args(server, src, tmp_path / "out.jsonl", "--concurrency", "3"))
        assert result.returncode == 0, result.stderr
        first = sorted(server.answered_captions())
    assert first == sorted({*CAPTIONS, "barking of a dog", "chirping birds"})
    assert "requests: 9, retries: 1, re-asks: 1; rejected captions: 3" in result.stdout
    clips = read_manifest(tmp_path / "out.jsonl")
    assert all(len(c.augmented_captions) == 5 for c in clips[1:])
    records = [json.loads(line) for line in (tmp_path / "out.cache.jsonl").read_text().splitlines()]
    assert len(records) == 8
    assert sum(len(r["rejected"]) for r in records) == 3
    assert KEY not in (tmp_path / "out.cache.jsonl").read_text() + result.stdout + result.stderr
    # a second run takes everything from the cache
    with FakeLLM() as server:
        cache = tmp_path / "out.cache.jsonl"
        again = run(*openai_args(server, src, tmp_path / "out2.jsonl", "--cache", str(cache)))
        assert again.returncode == 0 and server.received == []
    assert "8 distinct, 8 from the cache; requests: 0" in again.stdout
    assert read_manifest(tmp_path / "out2.jsonl") == clips


def test_limit_and_dry_run_send_nothing(tmp_path):
    src = manifest(tmp_path)
    out = tmp_path / "out.jsonl"
    with FakeLLM() as server:
        result = run(*openai_args(server, src, out, "--dry-run"), key=None)
        assert result.returncode == 0, result.stderr
        assert "would send 8 requests" in result.stdout and "nothing was sent" in result.stdout
        assert server.received == []
        assert not out.exists() and not (tmp_path / "out.cache.jsonl").exists()
        limited = run(*openai_args(server, src, out, "--limit", "2"))
        assert limited.returncode == 0, limited.stderr
        assert len(server.received) == 3
        dry = run(*openai_args(server, src, out, "--dry-run"))
        assert "3 already in the cache" in dry.stdout and "would send 5 requests" in dry.stdout
    clips = read_manifest(out)
    assert [bool(c.augmented_captions) for c in clips] == [True, True] + [False] * 6


def test_dry_run_leaves_a_cut_short_cache_as_it_was(tmp_path):
    src, out = manifest(tmp_path), tmp_path / "out.jsonl"
    cache = tmp_path / "out.cache.jsonl"
    first = run(src, "-o", out, "--backend", "offline", "--limit", "1")
    assert first.returncode == 0, first.stderr
    with cache.open("a") as handle:  # as if killed in the middle of writing a line
        handle.write('{"key": "abc", "kept": ["half a li')
    before = cache.read_bytes()
    dry = run(src, "-o", out, "--backend", "offline", "--dry-run")
    assert dry.returncode == 0 and "2 already in the cache" in dry.stdout
    assert cache.read_bytes() == before


def test_kill_and_resume(tmp_path):
    """SIGKILL after 3 answers, re-run: nothing asked twice, output as an uninterrupted run."""
    src = manifest(tmp_path)
    killed_out = tmp_path / "killed.jsonl"
    cache = tmp_path / "killed.cache.jsonl"
    with FakeLLM() as server:
        server.block_after = 3
        proc = subprocess.Popen(
            command(*openai_args(server, src, killed_out, "--concurrency", "1")),
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(server.received) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        while (not cache.exists() or len(cache.read_text().splitlines()) < 3) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert not killed_out.exists()
        assert len(cache.read_text().splitlines()) == 3
        with cache.open("a") as handle:  # as if killed in the middle of writing a line
            handle.write('{"key": "abc", "kept": ["half a li')
        server.block_after = None
        server.release.set()
        resumed = run(*openai_args(server, src, killed_out))
        assert resumed.returncode == 0, resumed.stderr
        assert "3 from the cache" in resumed.stdout
        asked = server.answered_captions()
    assert len(asked) == len(set(asked)) == 8  # no caption answered twice
    with FakeLLM() as server:
        whole = run(*openai_args(server, src, tmp_path / "whole.jsonl", "--concurrency", "1"))
        assert whole.returncode == 0, whole.stderr
    assert killed_out.read_text() == (tmp_path / "whole.jsonl").read_text()


def test_sigterm_stops_retrying_workers_soon_and_keeps_finished_answers(tmp_path):
    src = manifest(tmp_path)
    out, cache = tmp_path / "out.jsonl", tmp_path / "out.cache.jsonl"
    with FakeLLM() as server:
        server.plan.extend(["ok", "ok", *["500"] * 200])
        args = openai_args(server, src, out, "--concurrency", "2", "--max-tries", "50")
        args[args.index("--backoff") + 1] = "2"  # waits of 1-2 s, 2-4 s, 4-8 s...
        proc = subprocess.Popen(
            command(*args), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while len(server.received) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=15)  # was minutes: every retry, every wait
        finally:
            proc.kill()
        assert time.monotonic() - start < 10
        assert proc.returncode == 2 and stderr.strip() == "querysep: error: interrupted"
        assert not out.exists() and len(cache.read_text().splitlines()) == 2
        server.plan.clear()
        resumed = run(*openai_args(server, src, out))
    assert resumed.returncode == 0 and "8 distinct, 2 from the cache" in resumed.stdout


def test_a_second_ctrl_c_leaves_at_once(tmp_path):
    src = manifest(tmp_path)
    with FakeLLM(slow_seconds=30) as server:
        server.plan.extend(["slow"] * 20)
        args = openai_args(server, src, tmp_path / "out.jsonl", "--concurrency", "2")
        args[args.index("--timeout") + 1] = "60"
        proc = subprocess.Popen(
            command(*args),
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 60
        while len(server.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)  # the first waits for the answers in flight...
        time.sleep(1.0)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)  # ...the second does not
        start = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=20)
        finally:
            proc.kill()
        assert time.monotonic() - start < 5
        assert proc.returncode == 2 and stderr.strip() == "querysep: error: interrupted"


def test_unreachable_endpoint(tmp_path):
    src = manifest(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "out.jsonl"
    result = run(
        src,
        "-o",
        out,
        "--backend",
        "openai",
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
        "--model",
        MODEL,
        "--backoff",
        "0.01",
        "--max-tries",
        "3",
    )
    one_error_line(result, "failed after 3 tries: cannot connect")
    assert not out.exists()


@pytest.mark.parametrize(
    ("key", "model", "expect"),
    [
        ("sk-wrong-key-XYZ", MODEL, "refused the API key (HTTP 401)"),
        (KEY, "gpt-9", "has no model 'gpt-9'"),
    ],
)
def test_wrong_key_or_model(tmp_path, key, model, expect):
    src = manifest(tmp_path)
    out = tmp_path / "out.jsonl"
    with FakeLLM() as server:
        args = openai_args(server, src, out)
        args[args.index(MODEL)] = model
        result = run(*args, key=key)
    one_error_line(result, expect)
    assert key not in result.stderr + result.stdout
    assert not out.exists()


@pytest.mark.parametrize("concurrency", ["1", "3"])
def test_failure_keeps_finished_answers(tmp_path, concurrency):
    src = manifest(tmp_path)
    out = tmp_path / "out.jsonl"
    with FakeLLM() as server:
        server.plan.extend(["ok", "ok", *["500"] * 30])
        args = openai_args(server, src, out, "--concurrency", concurrency, "--max-tries", "3")
        result = run(*args)
    one_error_line(result, "server error HTTP 500")
    assert not out.exists()
    assert len((tmp_path / "out.cache.jsonl").read_text().splitlines()) == 2


def test_a_refused_request_names_its_caption_and_keeps_the_answers_before(tmp_path):
    src = manifest(tmp_path)
    out = tmp_path / "out.jsonl"
    with FakeLLM() as server:
        server.plan.extend(["ok", "400"])
        result = run(*openai_args(server, src, out, "--concurrency", "1"))
    refused = [entry["caption"] for entry in server.received if entry["action"] == "400"]
    assert len(refused) == 1
    one_error_line(
        result,
        "refused the request (HTTP 400): context length exceeded; the caption of clip "
        f"'c0' was {refused[0]!r}: edit or drop it in the manifest and run again",
    )
    assert not out.exists()
    assert len((tmp_path / "out.cache.jsonl").read_text().splitlines()) == 1


def test_a_refused_long_caption_is_shortened_in_the_error(tmp_path):
    src = tmp_path / "manifest.jsonl"
    long = "a dog barks " * 20000  # 240 KB: the line once printed it whole
    write_manifest([Clip(id="long-one", audio="l.wav", captions=[long])], src)
    with FakeLLM() as server:
        server.plan.append("400")
        result = run(*openai_args(server, src, tmp_path / "out.jsonl"))
    one_error_line(result, "the caption of clip 'long-one' was 'a dog barks a dog barks")
    assert len(result.stderr) < 400 and "...'" in result.stderr


def three_clips(folder: Path) -> Path:
    path = folder / "three.jsonl"
    clips = [Clip(id=f"t{i}", audio=f"t{i}.wav", captions=[CAPTIONS[i]]) for i in range(3)]
    write_manifest(clips, path)
    return path


def test_an_answer_without_captions_is_not_cached_and_is_asked_again(tmp_path):
    src, out = three_clips(tmp_path), tmp_path / "out.jsonl"
    with FakeLLM() as server:
        server.plan.extend(["ok", "refusal", "ok"])
        args = openai_args(server, src, out, "--concurrency", "1", "--max-reasks", "0")
        result = run(*args)
        assert result.returncode == 0, result.stderr
        assert "wrote 3 clips (2 augmented, 10 augmented captions)" in result.stdout
        assert "no caption: 1" in result.stdout
        assert [c.augmented_captions != [] for c in read_manifest(out)] == [True, False, True]
        assert len((tmp_path / "out.cache.jsonl").read_text().splitlines()) == 2
        server.received.clear()
        again = run(*args)  # the refused caption is asked again, the others are not
        assert again.returncode == 0, again.stderr
        assert [r["caption"] for r in server.received] == [CAPTIONS[1]]
    assert "wrote 3 clips (3 augmented, 15 augmented captions)" in again.stdout


def test_a_run_that_got_no_caption_at_all_fails_and_writes_nothing(tmp_path):
    src, out = three_clips(tmp_path), tmp_path / "out.jsonl"
    with FakeLLM() as server:
        server.plan.extend(["refusal", "null", "refusal"])  # null: "content": null
        args = openai_args(server, src, out, "--concurrency", "1", "--max-reasks", "0")
        result = run(*args)
    one_error_line(result, "none of the 3 captions got a usable new caption")
    assert "I'm sorry" in result.stderr
    assert not out.exists() and not (tmp_path / "out.cache.jsonl").exists()


@pytest.mark.parametrize(
    ("setup", "args", "expect"),
    [
        (None, ["missing.jsonl", "-o", "out.jsonl"], "manifest not found"),
        ("corrupt", ["manifest.jsonl", "-o", "out.jsonl"], "malformed manifest line"),
        ("folder", ["manifest.jsonl", "-o", "out.jsonl"], "it is a folder"),
        (
            "template",
            ["manifest.jsonl", "-o", "out.jsonl", "--template", "t.txt"],
            "no {caption} placeholder",
        ),
        (None, ["manifest.jsonl", "-o", "out.jsonl", "--backend", "gpt"], "--backend must be"),
        ("badcache", ["manifest.jsonl", "-o", "out.jsonl"], "is not a cache record"),
        # were OverflowError tracebacks once a request was sent
        (None, ["manifest.jsonl", "-o", "out.jsonl", "--timeout", "inf"], "--timeout"),
        (None, ["manifest.jsonl", "-o", "out.jsonl", "--timeout", "1e308"], "--timeout"),
        (None, ["manifest.jsonl", "-o", "out.jsonl", "--max-tries", "1100"], "--max-tries"),
    ],
)
def test_bad_input(tmp_path, setup, args, expect):
    manifest(tmp_path)
    if setup == "corrupt":
        (tmp_path / "manifest.jsonl").write_text('{"id": "a", "audio": 3}\n')
    elif setup == "folder":
        (tmp_path / "out.jsonl").mkdir()
    elif setup == "template":
        (tmp_path / "t.txt").write_text("Rewrite this: {keywords}\n")
    elif setup == "badcache":
        (tmp_path / "out.cache.jsonl").write_text('not json\n{"key": "k"}\n')
    before = sorted(p.name for p in tmp_path.iterdir())
    result = subprocess.run(
        command(*args, *([] if "--backend" in args else ["--backend", "offline"])),
        env=env(),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    one_error_line(result, expect)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
