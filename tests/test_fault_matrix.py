"""Faults, counted: on every path, the application's iterable is closed exactly
once and every ``call_on_close`` callback runs exactly once.

One test per path, each parametrised over every application shape whose body
has a ``close()`` (closing iterable, eager generator, lazy generator, ``write()``
user, ``wsgi.file_wrapper``); the
README's "Guarantees" table names these tests. The last test checks the same
through a real server (waitress) when the client goes away mid-stream.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from servers import running_server
from support import BODY, COUNTED_SHAPES, AppFailure, Counted, Counter, drive, make_app, make_environ
from webob import Response

from deferware import DeferMiddleware, after_this_request, call_on_close


class CallbackFailure(Exception):
    """Raised by an ``after_this_request`` callback on purpose."""


def registrar(
    counter: Counter, *callbacks: Callable[[Response], Any], close: bool = True
) -> Callable[..., None]:
    """Registers (from inside the app) a header callback, *callbacks*, and two close
    callbacks: one through the context, one through ``environ=``."""

    def add_header(response: Response) -> None:
        response.headers["X-Deferred"] = "yes"

    def during(environ: dict[str, Any]) -> None:
        after_this_request(add_header)
        for callback in callbacks:
            after_this_request(callback, environ=environ)
        if close:
            call_on_close(counter.closer("context"))
            call_on_close(counter.closer("environ"), environ=environ)

    return during


def failing_callback(response: Response) -> None:
    response.headers["X-Half-Done"] = "yes"
    raise CallbackFailure("the callback failed")


def assert_closed_once(counter: Counter, *, iterables: int = 1) -> None:
    assert counter.created == iterables
    assert counter.closes == iterables, f"close() ran {counter.closes} times for {iterables} iterable(s)"
    assert counter.close_callbacks == ["context", "environ"]


@pytest.mark.parametrize("registered", ["nothing", "after_this_request", "call_on_close", "both"])
@pytest.mark.parametrize("shape", COUNTED_SHAPES)
def test_normal_end_closes_once(shape: str, registered: str) -> None:
    counter = Counter()
    after = registered in ("after_this_request", "both")
    close = registered in ("call_on_close", "both")

    def during(environ: dict[str, Any]) -> None:
        if after:
            after_this_request(lambda response: response.headers.__setitem__("X-Deferred", "yes"))
        if close:
            call_on_close(counter.closer("context"))
            call_on_close(counter.closer("environ"), environ=environ)

    served = drive(DeferMiddleware(make_app(shape, counter=counter, during=during)))
    assert served.body == b"".join(BODY)
    assert (served.status, served.start_response_calls) == ("200 OK", 1)
    assert served.headers is not None
    assert ("X-Deferred", "yes") in served.headers if after else ("X-Deferred", "yes") not in served.headers
    assert (counter.created, counter.closes) == (1, 1)
    assert counter.close_callbacks == (["context", "environ"] if close else [])


@pytest.mark.parametrize("shape", COUNTED_SHAPES)
def test_callback_replaces_response_closes_once(shape: str) -> None:
    counter, replacement_counter = Counter(), Counter()

    def replace(response: Response) -> Response:
        return Response(app_iter=Counted([b"replaced"], replacement_counter), content_type="text/plain")

    app = make_app(shape, counter=counter, during=registrar(counter, replace))
    served = drive(DeferMiddleware(app))
    assert served.body == b"replaced"
    assert_closed_once(counter)
    assert (replacement_counter.created, replacement_counter.closes) == (1, 1)


@pytest.mark.parametrize("shape", COUNTED_SHAPES)
def test_callback_raises_under_raise_closes_once(shape: str) -> None:
    counter = Counter()
    app = make_app(shape, counter=counter, during=registrar(counter, failing_callback))
    calls: list[object] = []
    with pytest.raises(CallbackFailure, match="the callback failed"):
        DeferMiddleware(app)(make_environ(), lambda *args: calls.append(args))
    assert calls == [], "nothing may reach the server when a callback raises"
    assert_closed_once(counter)


@pytest.mark.parametrize("shape", COUNTED_SHAPES)
def test_callback_raises_under_log_closes_once(shape: str, caplog: pytest.LogCaptureFixture) -> None:
    counter = Counter()
    app = make_app(shape, counter=counter, during=registrar(counter, failing_callback))
    with caplog.at_level(logging.ERROR, logger="deferware"):
        served = drive(DeferMiddleware(app, on_callback_error="log"))
    assert served.body == b"".join(BODY)
    assert served.headers is not None
    assert ("X-Deferred", "yes") in served.headers
    assert "X-Half-Done" not in dict(served.headers), "the failed callback's change must be rolled back"
    assert [record.name for record in caplog.records] == ["deferware"]
    assert "failing_callback" in caplog.records[0].getMessage()
    assert_closed_once(counter)


@pytest.mark.parametrize("shape", COUNTED_SHAPES)
def test_app_raises_before_start_response_closes_once(shape: str) -> None:
    counter = Counter()
    app = make_app(shape, counter=counter, fault="before_start_response", during=registrar(counter))
    with pytest.raises(AppFailure, match="before start_response"):
        drive(DeferMiddleware(app))
    # Only the lazy generator has an iterable at that point; it must be closed.
    assert_closed_once(counter, iterables=1 if shape == "lazy_generator" else 0)


@pytest.mark.parametrize("shape", COUNTED_SHAPES)
def test_app_raises_after_start_response_closes_once(shape: str) -> None:
    counter = Counter()
    app = make_app(shape, counter=counter, fault="after_start_response", during=registrar(counter))
    with pytest.raises(AppFailure, match="after start_response"):
        drive(DeferMiddleware(app))
    assert_closed_once(counter, iterables=1 if shape == "lazy_generator" else 0)


@pytest.mark.parametrize("shape", COUNTED_SHAPES)
def test_app_raises_while_streaming_closes_once(shape: str) -> None:
    counter = Counter()
    app = make_app(shape, counter=counter, fault="streaming", during=registrar(counter))
    with pytest.raises(AppFailure, match="while streaming"):
        drive(DeferMiddleware(app))
    assert_closed_once(counter)


@pytest.mark.parametrize("shape", COUNTED_SHAPES)
def test_server_closes_early_closes_once(shape: str) -> None:
    counter = Counter()
    app = make_app(shape, counter=counter, during=registrar(counter))
    served = drive(DeferMiddleware(app), stop_after=1)
    assert served.body == BODY[0]
    assert_closed_once(counter)


@pytest.mark.parametrize("shape", COUNTED_SHAPES)
def test_close_called_twice_closes_once(shape: str) -> None:
    counter = Counter()
    app = make_app(shape, counter=counter, during=registrar(counter))
    served = drive(DeferMiddleware(app), close_times=2)
    assert served.body == b"".join(BODY)
    assert_closed_once(counter)


def _read_events(path: Path) -> list[str]:
    return path.read_text(encoding="ascii").splitlines() if path.exists() else []


def test_client_disconnect_through_real_server_closes_once(tmp_path: Path) -> None:
    events = tmp_path / "events.txt"
    log = tmp_path / "server.log"
    with running_server(
        "waitress", "isolation_app:streaming", log, env={"DEFERWARE_EVENTS": str(events)}
    ) as (
        port,
        _proc,
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            received = b""
            while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) == 0:
                data = client.recv(65536)
                assert data, "the server closed the connection before the first chunk"
                received += data
            head = received.partition(b"\r\n\r\n")[0]
            assert head.startswith(b"HTTP/1.1 200")
            assert b"X-Streaming: yes" in head
        # The client is gone. Wait (bounded) for the server to notice and close.
        deadline = time.monotonic() + 15
        while len(_read_events(events)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a second close() would show up by now
        seen = _read_events(events)
    closed = [line for line in seen if line.startswith("iterable-closed")]
    print(f"\n[disconnect] server events: {seen}")
    assert len(closed) == 1, seen
    assert seen.count("close-callback") == 1, seen
    sent = int(closed[0].split()[2])
    assert sent < 1000, "the response ran to its end: the disconnect was not noticed"
