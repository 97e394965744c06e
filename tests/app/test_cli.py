"""``querysep app`` on the command line: one-line errors before anything listens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from querysep.app.server import _launch, is_loopback
from querysep.cli import app as cli
from querysep.errors import ConfigError

runner = CliRunner()


def test_without_gradio_it_says_to_install_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now fails
    res = runner.invoke(cli, ["app"])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "querysep: error: querysep app needs gradio: install the app extra, "
        "pip install 'querysep[app]'"
    ]


def test_an_unknown_model_stops_it_with_the_separate_message(tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    before = dict(os.environ)
    res = runner.invoke(cli, ["app", "--model", "nope"])
    assert dict(os.environ) == before  # serve() sets gradio's variables only while it runs
    example = Path(__file__).parents[2] / "examples" / "dog-and-rain.wav"
    want = runner.invoke(
        cli, ["separate", str(example), "-q", "dog", "-m", "nope", "-o", str(tmp_path)]
    )
    assert res.exit_code == want.exit_code == 2
    assert res.stderr.strip().splitlines() == want.stderr.strip().splitlines()
    assert "unknown model 'nope'" in res.stderr


def test_the_cli_and_the_library_do_not_import_gradio() -> None:
    code = "import sys, querysep, querysep.cli, querysep.app; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_app_service_does_not_import_the_cli() -> None:
    # The app sits beside the CLI, not above it: it names outputs through querysep.outputs.
    code = (
        "import sys, querysep.app.service; "
        "print(sorted(m for m in sys.modules if m == 'typer' or m.startswith('querysep.cli')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_addresses_and_ports() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert is_loopback("[::1]") and is_loopback("::ffff:127.0.0.1")  # as in a URL; mapped
    assert not is_loopback("::") and not is_loopback("[::]")
    assert is_loopback("127.1") and is_loopback("127.0.1.1")  # short form; Debian's hostname

    class Busy:
        def launch(self, **options: object) -> None:
            raise OSError("Cannot find empty port in range: 7860-7860.")

    with pytest.raises(ConfigError, match=r"cannot listen on 127.0.0.1:7860: .* --port"):
        _launch(Busy(), "127.0.0.1", 7860)


def test_ipv6_hosts_come_in_brackets() -> None:
    from querysep.app.server import check_host

    assert check_host("127.0.0.1") == "127.0.0.1" and check_host("localhost") == "localhost"
    assert check_host("0.0.0.0") == "0.0.0.0"
    if socket.has_ipv6 and _can_bind_ipv6():
        # gradio builds its URLs from the host: "http://::1:7860/" is no URL
        assert check_host("::1") == check_host("[::1]") == "[::1]"
        assert check_host("::") == "[::]"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts ``querysep app`` went on to serve on (nothing is served or loaded)."""
    pytest.importorskip("gradio")
    import querysep.app

    hosts: list[str] = []
    monkeypatch.setattr(querysep.app, "serve", lambda config, host, **kw: hosts.append(host))
    return hosts


def test_a_bad_host_is_a_one_line_error_before_any_model_loads(
    monkeypatch: pytest.MonkeyPatch, served: list[str]
) -> None:
    real = socket.getaddrinfo

    def no_dns(host: str, *args: object, **kwargs: object) -> object:
        """Names no resolver knows, whatever this machine's DNS does with them."""
        if host in ("no such host", "999.1.1.1"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    for host, problem in [
        ("no such host", "not an IP address or a name this machine can resolve"),
        ("999.1.1.1", "not an IP address or a name this machine can resolve"),
        ("[::1", "not an IP address or a name this machine can resolve"),
        ("", "not an IP address or a name this machine can resolve"),
        ("192.0.2.1", "it is not one of this machine's addresses"),  # TEST-NET-1
    ]:
        res = runner.invoke(cli, ["app", "--host", host, "-m", "test-tiny"])
        assert res.exit_code == 2, (host, res.output)
        assert res.stderr.strip().splitlines() == [
            f"querysep: error: cannot listen on {host!r}: {problem} (choose another with "
            + ("--host, e.g. 127.0.0.1, ::1 or 0.0.0.0)" if "resolve" in problem else "--host)")
        ], host  # no network warning, no traceback
    # the server's IPv6 socket takes IPv6 only: this was accepted, then failed at launch
    res = runner.invoke(cli, ["app", "--host", "::ffff:127.0.0.1", "-m", "test-tiny"])
    assert res.exit_code == 2 and res.stderr.strip().splitlines() == [
        "querysep: error: cannot listen on '::ffff:127.0.0.1': an IPv4-mapped IPv6 address; "
        "give its IPv4 form, --host 127.0.0.1"
    ]
    assert served == []  # refused before any model is loaded


def test_a_port_in_use_is_refused_before_any_model_loads(served: list[str]) -> None:
    with socket.socket() as other:  # another program listens there
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        res = runner.invoke(cli, ["app", "--port", str(port), "-m", "test-tiny"])
        assert res.exit_code == 2, res.output
        assert res.stderr.strip().splitlines() == [
            f"querysep: error: cannot listen on 127.0.0.1:{port}: another program is "
            "listening on that port (choose another with --port)"
        ]
        assert served == []
    res = runner.invoke(cli, ["app", "--port", str(port), "-m", "test-tiny"])
    assert res.exit_code == 0 and served == ["127.0.0.1"]  # free again


def _can_bind_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-disk-gb", "inf"),
        ("--max-disk-gb", "nan"),
        ("--max-upload-mb", "inf"),
        ("--max-upload-mb", "1e14"),
        ("--max-upload-mb", "nan"),
        ("--max-minutes", "nan"),
        ("--max-minutes", "-1"),
        ("--max-segment-seconds", "nan"),
        ("--max-segment-seconds", "0"),
        ("--keep-minutes", "1e9"),
        ("--keep-minutes", "nan"),
        ("--stop-grace-seconds", "inf"),
        ("--stop-grace-seconds", "nan"),
        ("--concurrency", "0"),
        ("--concurrency", "100000"),
    ],
)
def test_limits_out_of_range_are_one_line_errors_before_any_model_loads(
    monkeypatch: pytest.MonkeyPatch, option: str, value: str
) -> None:
    pytest.importorskip("gradio")
    served: list[object] = []
    import querysep.app

    monkeypatch.setattr(querysep.app, "serve", lambda config, **kw: served.append(config))
    res = runner.invoke(cli, ["app", option, value, "-m", "test-tiny"])
    assert res.exit_code == 2, res.output
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("querysep: error: ") and option in line, line
    assert served == []  # refused before any model is loaded


def test_the_options_take_the_ranges_of_app_config() -> None:
    from querysep.app.service import LIMITS

    command = typer.main.get_command(cli).commands["app"]  # type: ignore[attr-defined]
    ranges = {}
    for param in command.params:
        bounds = getattr(param, "type", param)  # click keeps them on its range type
        if getattr(bounds, "min", None) is not None and param.name != "port":
            ranges[param.name] = (bounds.min, bounds.max)
    assert ranges == {name: LIMITS[name][:2] for name in ranges}
    assert set(ranges) == set(LIMITS) - {"max_queries", "max_queue"}  # no option for these
