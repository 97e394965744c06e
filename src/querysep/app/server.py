"""Running the web app: a private folder, the models, the page, the queue, the server."""

from __future__ import annotations

import contextlib
import errno
import inspect
import ipaddress
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ConfigError
from .service import AppConfig, SeparationService
from .workspace import Workspace

__all__ = ["check_host", "is_loopback", "serve"]


def _unbracketed(host: str) -> str:
    """``host`` without the brackets of a URL's IPv6 address (``[::1]`` -> ``::1``)."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name, an address, an IPv6 address in brackets) is reachable only
    from this machine: every address it resolves to is a loopback one (``127.1``, a name
    that ``/etc/hosts`` maps to ``127.0.1.1``)."""
    host = _unbracketed(host)
    if host == "localhost":
        return True
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return False
    addresses = {ipaddress.ip_address(address[0].split("%")[0]) for *_, address in found}
    return bool(addresses) and all(_is_loopback_address(a) for a in addresses)


def _is_loopback_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def check_host(host: str, port: int = 0) -> str:
    """``host`` as the server is given it, once this machine can listen on it (and on
    ``port``, unless it is 0).

    Args:
        host: A name, an IPv4 or IPv6 address, or an IPv6 address in brackets.
        port: The port the server will listen on; 0 checks the address only.

    Returns:
        ``host``, with an IPv6 address in brackets (as a URL needs it).

    Raises:
        ConfigError: ``host`` is not an address or a name that resolves, is not one of
            this machine's addresses, or another program listens on ``port`` there.
    """
    bare = _unbracketed(host.strip())
    try:
        parsed = ipaddress.ip_address(bare)
    except ValueError:
        parsed = None
    version = None if parsed is None else parsed.version
    mapped = getattr(parsed, "ipv4_mapped", None)
    if mapped is not None:  # the server's IPv6 socket takes IPv6 only
        raise ConfigError(
            f"cannot listen on {host!r}: an IPv4-mapped IPv6 address; give its IPv4 form, "
            f"--host {mapped}"
        )
    try:
        found = socket.getaddrinfo(bare, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        found = []
    if not bare or not found:
        raise ConfigError(
            f"cannot listen on {host!r}: not an IP address or a name this machine can resolve "
            "(choose another with --host, e.g. 127.0.0.1, ::1 or 0.0.0.0)"
        )
    in_use = False
    for family, kind, proto, _, address in found:
        try:
            with socket.socket(family, kind, proto) as probe:
                if family == socket.AF_INET6:  # as the server's socket: IPv6 only, so an
                    # IPv4-mapped address (::ffff:127.0.0.1) is refused here, not at launch
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                # as the server's socket too: a port left in TIME_WAIT by a server that just
                # stopped can be listened on again
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((address[0], port, *address[2:]))
            break
        except OSError as exc:
            in_use = in_use or exc.errno == errno.EADDRINUSE
            continue
    else:
        if in_use:
            raise ConfigError(
                f"cannot listen on {_unbracketed(host.strip())}:{port}: another program is "
                "listening on that port (choose another with --port)"
            )
        raise ConfigError(
            f"cannot listen on {host!r}: it is not one of this machine's addresses "
            "(choose another with --host)"
        )
    return f"[{bare}]" if version == 6 else bare


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set inside, as it was outside."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (a service manager, ``kill``) stops the server as Ctrl-C does, cleanly."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _launch(page: Any, host: str, port: int, **options: Any) -> None:
    """``page.launch`` on ``host`` (as :func:`check_host` gives it: gradio builds its URLs
    from it, so an IPv6 address comes in brackets) and ``port``."""
    if "run_history" in inspect.signature(page.launch).parameters:  # recent gradio 6 releases
        options["run_history"] = False  # keep no copies of recordings in the browser's storage
    try:
        page.launch(server_name=host, server_port=port, **options)
    except OSError as exc:  # gradio's message suggests its own environment variables
        raise ConfigError(
            f"cannot listen on {host}:{port}: the port is in use or the address is not this "
            "machine's (choose another with --port or --host)"
        ) from exc


def serve(
    config: AppConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the app until Ctrl-C or SIGTERM, then remove its private folder.

    A request still being separated when the server stops gets
    ``config.stop_grace_seconds`` to finish; after that it is abandoned and the process ends
    (exit status 0, :func:`os._exit`) as soon as the folder is removed.

    gradio keeps uploads in ``GRADIO_TEMP_DIR``; while it serves, this sets it (and the
    example cache) to a new private folder, so nothing outside that folder can be fetched.
    Parts of gradio read it when first imported: call this before importing gradio.

    Args:
        config: The app's settings.
        host: Address to listen on (loopback unless told otherwise; see :func:`check_host`).
        port: Port to listen on.
        share: Ask gradio for a public share link.
        announce: Prints the addresses once the server listens.

    Raises:
        QuerysepError: A ``host`` this machine cannot listen on or a model that cannot be
            loaded (both before anything listens), or a port that cannot be listened on.
    """
    host = check_host(host, port)
    workspace = Workspace(
        keep_seconds=config.keep_minutes * 60, max_bytes=int(config.max_disk_gb * 2**30)
    )
    gradio_environ = {
        "GRADIO_TEMP_DIR": str(workspace.root),
        "GRADIO_EXAMPLES_CACHE": str(workspace.root / "examples-cache"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    page, service, stopped = None, None, False
    try:
        with _environ(gradio_environ), _stop_on_sigterm():
            service = SeparationService(config, workspace)
            service.warm()
            import gradio as gr

            from .page import build_page

            page = build_page(service)
            page.queue(max_size=config.max_queue, default_concurrency_limit=config.concurrency)
            workspace.pin_contents()  # gradio copied the example recordings in: keep them
            workspace.start_pruning()
            _launch(
                page,
                host,
                port,
                share=share,
                prevent_thread_lock=True,
                quiet=True,
                max_file_size=int(config.max_upload_mb * 1e6),
                footer_links=["api"],
                theme=gr.themes.Default(
                    font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
                ),
            )
            announce(f"querysep app: serving on {page.local_url} (Ctrl-C to stop)")
            if page.share_url:
                announce(f"querysep app: public link {page.share_url}")
            announce(f"querysep app: files in {workspace.root} (private, removed on exit)")
            with contextlib.suppress(KeyboardInterrupt):
                while page.is_running:
                    time.sleep(0.5)
        stopped = True  # by Ctrl-C, SIGTERM or gradio, not by an error on the way
    finally:
        busy = 0
        try:
            if page is not None:
                page.close()
            if service is not None:
                with _signals_ignored():  # a second Ctrl-C must not skip the cleanup below
                    busy = _wait_busy(service, config.stop_grace_seconds)
        finally:
            workspace.close()
    if busy and stopped:
        # A request still inside torch runs in a thread nothing can interrupt, and ending the
        # interpreter around it aborts the process (exit 134). Its files went with the folder.
        print(
            f"querysep app: stopped; {busy} request(s) in progress were abandoned",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(0)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM inside the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_busy(service: SeparationService, seconds: float) -> int:
    """Wait until no request is being separated, at most ``seconds``; how many still are."""
    deadline = time.monotonic() + seconds
    while service.busy and time.monotonic() < deadline:
        time.sleep(0.1)
    return service.busy
