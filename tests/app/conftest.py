"""``querysep app`` started as a person starts it: its own process, on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import querysep

EXAMPLES = Path(__file__).parents[2] / "examples"


@dataclass
class RunningApp:
    url: str
    folder: Path  # its private folder
    process: subprocess.Popen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(folder: Path, *options: str, url_host: str = "127.0.0.1") -> Iterator[RunningApp]:
    """``querysep app --port FREE *options`` until the block ends, then SIGTERM.

    ``url_host`` is where the page is fetched (``[::1]`` for ``--host ::1``). After it
    stops, its private folder must be gone.
    """
    pytest.importorskip("gradio", reason="the app extra (gradio) is not installed")
    log = folder / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    src = str(Path(querysep.__file__).parents[1])  # this checkout, not another install
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    port = _free_port()
    cmd = [sys.executable, "-m", "querysep", "app", "--port", str(port), *options]
    with log.open("w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://{url_host}:{port}/"
    try:
        app = RunningApp(url, _wait_until_serving(process, url, log), process)
        yield app
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=300) == 0, log.read_text()
        assert not app.folder.exists(), "the private folder outlived the server"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app as the README starts it (default settings), shared by the tests."""
    with running_app(tmp_path_factory.mktemp("app")) as app:
        yield app


def _wait_until_serving(process: subprocess.Popen, url: str, log: Path) -> Path:
    """Wait for the page to answer; return the private folder the app announced."""
    deadline = time.monotonic() + 600  # importing gradio and torch on a busy CI machine
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"querysep app exited with {process.returncode}:\n{log.read_text()}")
        found = re.search(r"files in (\S+) \(private", log.read_text())
        if found:
            with urllib.request.urlopen(url, timeout=30) as response:
                assert response.status == 200
            return Path(found.group(1))
        time.sleep(0.5)
    pytest.fail(f"querysep app did not start within 600 s:\n{log.read_text()}")
