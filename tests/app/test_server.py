"""The app's ``separate`` endpoint driven through gradio_client, as a script would use it."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import wait
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from querysep.cli import app as cli
from querysep.metrics import sdr
from querysep.testing import synth

from .conftest import EXAMPLES, RunningApp, running_app

gradio_client = pytest.importorskip("gradio_client", reason="the app extra is not installed")
DOG = EXAMPLES / "dog-and-rain.wav"


@pytest.fixture(scope="module")
def client(app_server: RunningApp, tmp_path_factory: pytest.TempPathFactory):
    return gradio_client.Client(
        app_server.url,
        verbose=False,
        analytics_enabled=False,
        download_files=str(tmp_path_factory.mktemp("downloads")),
    )


def _separate(client, path: Path | dict, queries: str, **options):
    recording = gradio_client.handle_file(str(path)) if isinstance(path, Path) else path
    return client.predict(recording, queries, api_name="/separate", **options)


def _cli_error(*args: str, cwd: Path) -> str:
    """What ``querysep separate`` prints for the same input (from the file's folder)."""
    import os

    here = Path.cwd()
    os.chdir(cwd)
    try:
        res = CliRunner().invoke(cli, ["separate", *args, "--no-ats", "-o", "out"])
    finally:
        os.chdir(here)
    assert res.exit_code == 2, res.output
    return res.stderr.strip().removeprefix("querysep: error: ")


def test_two_queries_give_two_files_and_the_residual(client, tmp_path: Path) -> None:
    files, report = _separate(client, DOG, "a dog barking\nrain")
    names = [Path(f).name for f in files]
    assert names == [
        "dog-and-rain__a-dog-barking.wav",
        "dog-and-rain__rain.wav",
        "dog-and-rain__residual.wav",
    ]
    mixture, rate = sf.read(DOG, always_2d=True)
    tracks = []
    for f in files:
        data, r = sf.read(f, always_2d=True)
        assert (sf.info(f).format, r, data.shape) == ("WAV", rate, mixture.shape)
        tracks.append(data)
    np.testing.assert_allclose(sum(tracks), mixture, rtol=0, atol=3.03 / 2**15)
    assert [o["query"] for o in report["outputs"]] == ["a dog barking", "rain"]
    assert report["model"] == "esc50-minilm" and report["ats_model"] == "esc50-clap"
    assert all(0 < o["ats"] <= 1 for o in report["outputs"])
    # the bundled model answers each query as its nearest training text; the report says which
    from querysep import Separator

    texts = Separator("esc50-minilm").answered_as(["a dog barking", "rain"])
    assert [o["answered_as"] for o in report["outputs"]] == texts
    assert [o["far_from_training"] for o in report["outputs"]] == [False, False]

    # the first output is what `querysep separate` writes for the same input and query
    out = tmp_path / "cli.wav"
    res = CliRunner().invoke(cli, ["separate", str(DOG), "-q", "a dog barking", "-o", str(out)])
    assert res.exit_code == 0, res.output
    want, _ = sf.read(out, dtype="float32")
    got, _ = sf.read(files[0], dtype="float32")
    assert sdr(want, got) >= 30.0
    # the same score, too (to its printed 3 decimals: the two outputs differ below -30 dB)
    printed = float(re.search(r"ATS (-?[0-9.]+)", res.stdout).group(1))
    assert abs(printed - report["outputs"][0]["ats"]) <= 1.5e-3


def test_normalize_level_is_what_separate_normalize_writes(client, tmp_path: Path) -> None:
    mixture, rate = sf.read(DOG, dtype="float32", always_2d=True)
    quiet = tmp_path / "quiet-dog.wav"  # about -40 dBFS, where normalizing matters
    sf.write(quiet, mixture * (0.01 / np.abs(mixture).max()), rate, subtype="FLOAT")
    files, report = _separate(client, quiet, "a dog barking", normalize=True)
    assert report["normalize"] is True
    out = tmp_path / "cli.wav"
    args = [
        "separate",
        str(quiet),
        "-q",
        "a dog barking",
        "--normalize",
        "--no-ats",
        "-o",
        str(out),
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    want, _ = sf.read(out, dtype="float32")
    got, _ = sf.read(files[0], dtype="float32")
    assert sdr(want, got) >= 30.0


def test_bad_requests_get_the_cli_message_and_the_server_goes_on(client, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" + bytes(range(256)))
    nan = np.full(16000, 0.1, np.float32)
    nan[100] = np.nan
    synth.write_wav(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    cases = [
        (DOG, "", ["-q", ""]),
        (DOG, "z" * 1001, ["-q", "z" * 1001]),
        (corrupt, "a dog", ["-q", "a dog"]),
        (tmp_path / "nan.wav", "a dog", ["-q", "a dog"]),
    ]
    for path, queries, cli_args in cases:
        with pytest.raises(gradio_client.exceptions.AppError) as exc:
            _separate(client, path, queries)
        assert str(exc.value) == _cli_error(path.name, *cli_args, cwd=path.parent)
    with pytest.raises(gradio_client.exceptions.AppError, match="unknown model 'nope'"):
        _separate(client, DOG, "a dog", model="nope")
    files, _ = _separate(client, DOG, "a dog barking")  # the next valid request works
    assert len(files) == 2


def test_limits_give_a_clear_message(tmp_path: Path) -> None:
    quiet = synth.tone(70.0, 8000, amp=0.01)
    synth.write_wav(tmp_path / "long.flac", quiet, 8000)
    big = synth.write_wav(tmp_path / "big.wav", synth.noise(40.0, 16000), 16000)  # 1.3 MB
    with running_app(tmp_path, "--max-minutes", "1", "--max-upload-mb", "1") as app:
        small = gradio_client.Client(
            app.url, verbose=False, analytics_enabled=False, download_files=str(tmp_path)
        )
        with pytest.raises(gradio_client.exceptions.AppError, match=r"long.flac lasts 1.2 min"):
            _separate(small, tmp_path / "long.flac", "a dog")
        with pytest.raises(Exception, match=r"(?i)size"):
            _separate(small, big, "a dog")
        files, _ = _separate(small, DOG, "a dog")  # and it goes on serving
        assert len(files) == 2


def test_an_ipv6_loopback_address_is_served_without_the_network_warning(tmp_path: Path) -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback address")
    options = ["--host", "::1", "-m", "test-tiny", "--clap", "test-tiny"]
    with running_app(tmp_path, *options, url_host="[::1]") as app:
        log = (tmp_path / "server.log").read_text()
        assert f"serving on http://[::1]:{app.url.split(':')[-1]}" in log
        assert "warning" not in log  # loopback: reachable from this machine only
        client = gradio_client.Client(
            app.url, verbose=False, analytics_enabled=False, download_files=str(tmp_path)
        )
        files, _ = _separate(client, DOG, "a dog")
        assert len(files) == 2


def test_three_concurrent_requests_all_succeed(client) -> None:
    queries = ["a dog barking", "rain", "a dog barking\nrain"]
    jobs = [
        client.submit(gradio_client.handle_file(str(DOG)), q, api_name="/separate") for q in queries
    ]
    wait(jobs, timeout=600)
    for job, q in zip(jobs, queries, strict=True):
        files, report = job.result()
        assert len(files) == q.count("\n") + 2
        assert [o["query"] for o in report["outputs"]] == q.split("\n")


def test_no_file_outside_the_private_folder_can_be_fetched(
    client, app_server: RunningApp, tmp_path: Path
) -> None:
    files, _ = _separate(client, DOG, "rain")
    base = f"{app_server.url}gradio_api"
    inside = next(app_server.folder.glob(f"jobs/*/{Path(files[0]).name}"))
    with urllib.request.urlopen(f"{base}/file={inside}") as response:
        assert response.status == 200
    beside = app_server.folder.parent / f"{app_server.folder.name}-beside.txt"
    beside.write_text("not for the web")
    try:
        for outside in (
            DOG,
            Path(__file__),
            "/etc/passwd",
            f"{app_server.folder}/../{beside.name}",
        ):
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(f"{base}/file={outside}")
            assert exc.value.code == 403, outside
    finally:
        beside.unlink()
    # nor can a request name a file on the server that it did not upload (raw HTTP: the
    # client would upload a local path itself); the same request with an upload works
    assert _raw_call(base, str(DOG.resolve())).startswith("event: error")
    assert _raw_call(base, _upload(base, DOG)).startswith("event: complete")


def _upload(base: str, path: Path) -> str:
    boundary = "querysep-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{path.name}"\r\nContent-Type: audio/wav\r\n\r\n'
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    with urllib.request.urlopen(urllib.request.Request(f"{base}/upload", body, headers)) as r:
        return json.load(r)[0]


def _raw_call(base: str, server_path: str) -> str:
    """The event stream of one ``separate`` call naming ``server_path`` as the recording."""
    recording = {"path": server_path, "meta": {"_type": "gradio.FileData"}}
    data = [recording, "a dog", "esc50-minilm", 10, 1, "cpu", False]  # every input, in order
    body = json.dumps({"data": data}).encode()
    headers = {"Content-Type": "application/json"}
    with urllib.request.urlopen(
        urllib.request.Request(f"{base}/call/separate", body, headers)
    ) as r:
        event = json.load(r)["event_id"]
    with urllib.request.urlopen(f"{base}/call/separate/{event}", timeout=300) as r:
        return r.read().decode()


def test_sigterm_during_a_request_stops_cleanly(tmp_path: Path) -> None:
    # Many small segments make test-tiny slow enough to be stopped mid-request: ten minutes
    # of audio keep it busy well past the 5 s gradio's close waits for requests in progress
    # (one minute took under 3 s on a 2-core AVX-512 CPU: the request ended inside the wait).
    long = synth.write_wav(tmp_path / "long.wav", synth.noise(600.0, 16000), 16000)
    options = ["-m", "test-tiny", "--clap", "test-tiny", "--stop-grace-seconds", "0"]
    with running_app(tmp_path, *options) as app:
        client = gradio_client.Client(
            app.url, verbose=False, analytics_enabled=False, download_files=str(tmp_path)
        )
        job = client.submit(
            gradio_client.handle_file(str(long)),
            "a dog\nrain\nwind",
            "test-tiny",
            0.2,
            0.05,
            api_name="/separate",
        )
        deadline = time.monotonic() + 120
        working = {"PROCESSING", "PROGRESS"}
        while job.status().code.name not in working and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        assert not job.done(), "the request ended before the server was stopped"
    # running_app then sent SIGTERM and checked: exit status 0, private folder gone
    log = (tmp_path / "server.log").read_text()
    assert "terminate called" not in log, log
    assert "1 request(s) in progress were abandoned" in log, log
