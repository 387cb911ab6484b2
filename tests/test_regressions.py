"""One behavioural test per bug of issue 15, each seen failing on deferware 1.0.

Every test states the intended behaviour through the public API only, driven as
a server would drive the middleware (``support.drive``), through WebTest, or
through a real Pyramid application. The docstring of each names its bug.
"""

from __future__ import annotations

import contextvars
import gc
import io
import logging
import pickle
import weakref
from typing import Any, Callable, Iterable, Iterator
from wsgiref.validate import validator

import greenlet
import pytest
import webob.exc
from pyramid.config import Configurator
from pyramid.events import NewRequest
from pyramid.request import Request as PyramidRequest
from pyramid.response import Response as PyramidResponse
from support import BODY, Counter
from webob import Response
from webtest import TestApp

from deferware import DeferMiddleware, ResponseAlreadyStarted, after_this_request, call_on_close
from deferware.testing import deferred

TEXT = ("Content-Type", "text/plain; charset=UTF-8")
LENGTH = ("Content-Length", "11")


def registering(
    *callbacks: Callable[..., Any], close: Iterable[Callable[[], object]] = ()
) -> Callable[..., None]:
    """A ``during`` for ``make_app``: registers *callbacks*, then *close*."""

    def during(environ: dict[str, Any]) -> None:
        for callback in callbacks:
            after_this_request(callback)
        for func in close:
            call_on_close(func)

    return during


def set_status(status: str, body: bytes | None = None) -> Callable[[Response], None]:
    def callback(response: Response) -> None:
        response.status = status
        if body is not None:
            response.body = body

    return callback


def gzip_encode(response: Response) -> None:
    response.encode_content("gzip")  # adds gzip framing bytes even to an empty body


NOT_MODIFIED, NO_CONTENT = "304 Not Modified", "204 No Content"
OK = ("200 OK", [TEXT, LENGTH], BODY)


@pytest.mark.parametrize(
    ("app_response", "callback", "final", "length"),
    [
        pytest.param(OK, set_status(NOT_MODIFIED), NOT_MODIFIED, ["11"], id="304-body-left"),
        pytest.param(OK, set_status(NOT_MODIFIED, b"changed"), NOT_MODIFIED, [], id="304-body-changed"),
        pytest.param(OK, set_status(NO_CONTENT), NO_CONTENT, [], id="204-body-left"),
        pytest.param((NO_CONTENT, [], []), gzip_encode, NO_CONTENT, [], id="204-gzip-encoded"),
    ],
)
def test_no_body_byte_goes_out_on_a_bodiless_status(app_response, callback, final, length, make_app, drive):
    """Bug 1: a 204/304 after the callbacks sends no body byte; Content-Length per RFC 9110."""
    status, headers, body = app_response
    counter = Counter()
    app = make_app(
        "closing", counter=counter, during=registering(callback), status=status, headers=headers, body=body
    )
    # No outer validator: it refuses a Content-Type on 304, which the callback left there.
    sent = drive(DeferMiddleware(validator(app)))

    assert sent.status == final
    assert sent.body == b"", "a body went out on a bodiless status"
    assert sent.header("Content-Length") == length
    assert counter.closes == 1


def test_write_with_nothing_registered_goes_to_the_server_at_once(wrap, drive):
    """Bug 2: write() is not buffered when nothing is registered at the first write()."""
    log: list[Any] = []
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        write = start_response("200 OK", [TEXT])
        write(b"first")
        seen["server had"] = list(log)
        try:
            after_this_request(lambda response: None)
        except ResponseAlreadyStarted as error:
            seen["late registration"] = error
        return [b" rest"]

    sent = drive(wrap(app), log=log)

    assert seen["server had"] == [("server start_response", "200 OK"), ("server got", b"first")]
    assert isinstance(seen.get("late registration"), ResponseAlreadyStarted)
    assert sent.body == b"first rest"


def conditional(response: Response) -> None:
    response.conditional_response = True
    response.etag = "v1"


@pytest.mark.parametrize(
    ("request_headers", "status", "body"),
    [
        pytest.param({"If-None-Match": '"v1"'}, 304, b"", id="if-none-match"),
        pytest.param({"Range": "bytes=0-1"}, 206, b"he", id="range"),
        pytest.param({"Range": "bytes=100-200"}, 416, None, id="unsatisfiable-range"),
    ],
)
def test_conditional_response_set_by_a_callback_is_honoured(request_headers, status, body, wrap):
    """Bug 3: conditional_response=True from a callback gives 304/206/416, Location untouched."""

    def app(environ, start_response):
        after_this_request(conditional)
        start_response("200 OK", [TEXT, LENGTH, ("Location", "/next")])
        return list(BODY)

    result = TestApp(wrap(app)).get("/", headers=request_headers, status="*")

    assert result.status_int == status
    if body is not None:
        assert result.body == body
    assert result.headers["Location"] == "/next", "a relative Location must stay relative"


def test_log_policy_body_set_by_a_callback_finds_its_request_in_later_chunks(make_app, wrap, drive):
    """Bug 4a: under "log", call_on_close from a callback-set body is taken when a later callback exists."""
    log: list[Any] = []

    def stream() -> Iterator[bytes]:
        yield b"a"
        call_on_close(lambda: log.append("closed"))
        yield b"b"

    def set_stream(response):
        response.app_iter = stream()

    app = make_app("list", during=registering(set_stream, lambda response: None))
    sent = drive(wrap(app, on_callback_error="log"), log=log)

    assert sent.body == b"ab"
    assert log[-3:] == [("server got", b"a"), ("server got", b"b"), "closed"]


def test_log_policy_does_not_roll_back_a_failed_stream_into_a_truncated_body(make_app, wrap, drive):
    """Bug 4b: under "log", a stream that raised while a later callback read it propagates."""

    def failing_stream() -> Iterator[bytes]:
        yield b"first"
        raise LookupError("the stream failed")

    def set_stream(response):
        response.app_iter = failing_stream()

    def read(response):
        response.body  # noqa: B018 - reading it is the point: it raises

    # (1.0 already propagates a failing *application* body, see test_errors.py.)
    with pytest.raises(LookupError, match="the stream failed"):
        drive(wrap(make_app("list", during=registering(set_stream, read)), on_callback_error="log"))


def test_log_policy_covers_a_replacement_that_fails_while_it_is_sent(
    make_app, wrap, drive, make_environ, caplog
):
    """Bug 4c: under "log", a webob.exc replacement whose page generation raises is logged and undone."""

    def broken_formatter(body, status, title, environ):
        raise KeyError("missing")

    def forbid(response):
        # (body_template="${missing}" does not raise: WebOb 1.8 uses safe_substitute.)
        return webob.exc.HTTPForbidden(json_formatter=broken_formatter)

    environ = make_environ(HTTP_ACCEPT="application/json")
    with caplog.at_level(logging.ERROR, logger="deferware"):
        sent = drive(wrap(make_app("list", during=registering(forbid)), on_callback_error="log"), environ)

    assert (sent.status, sent.body) == ("200 OK", b"hello world")
    assert any(record.name == "deferware" for record in caplog.records)
    assert "KeyError" in caplog.text


class Server:
    """A server's request task, as waitress has one: it holds the environ, and its bound
    methods are the start_response and write the application gets."""

    def __init__(self, environ: dict[str, Any], refuse_headers: bool) -> None:
        self.environ = environ
        self.refuse_headers = refuse_headers

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if self.refuse_headers:
            raise ValueError("header value contains a CR or LF")  # as waitress does
        return self.write

    def write(self, data: bytes) -> None:
        pass

    def serve(self, app: Callable[..., Iterable[bytes]]) -> None:
        body = app(self.environ, self.start_response)
        try:
            b"".join(body)
        finally:
            if hasattr(body, "close"):
                body.close()


class FailingClose(list):  # type: ignore[type-arg]
    def close(self) -> None:
        raise OSError("closing the application's iterable failed")


def header(response: Response) -> None:
    response.headers["X-Seen"] = "yes"


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            {"callbacks": [header], "close": [lambda: None], "close_raises": True}, id="app-close-raises"
        ),
        pytest.param({"callbacks": [header], "refuse_headers": True}, id="server-start-response-raises"),
        pytest.param({"copy_context": True}, id="context-copied-nothing-registered"),
        pytest.param({"callbacks": [header], "copy_context": True}, id="context-copied-callback-registered"),
    ],
)
def test_no_reference_cycle_keeps_the_request_alive(case, make_environ, monkeypatch):
    """Bug 5: nothing of a request outlives it by a cycle, nor by a context copied during it."""
    # A captured log record keeps its traceback's frames (the server's among them) alive.
    monkeypatch.setattr(logging.getLogger("deferware"), "propagate", False)
    copied: list[contextvars.Context] = []

    def app(environ, start_response):
        registering(*case.get("callbacks", ()), close=case.get("close", ()))(environ)
        if case.get("copy_context"):
            copied.append(contextvars.copy_context())
        start_response("200 OK", [TEXT])
        return FailingClose(BODY) if case.get("close_raises") else list(BODY)

    gc.collect()
    gc.disable()  # only reference counting may free the request
    try:
        server = Server(make_environ(), case.get("refuse_headers", False))
        server_ref = weakref.ref(server)
        try:
            server.serve(DeferMiddleware(app))
        except (OSError, ValueError):
            pass
        del server
        alive = server_ref() is not None
    finally:
        gc.enable()

    assert not alive, "the server's request task (and its environ) outlived the request"
    assert len(copied) == int(case.get("copy_context", False))  # the copy was alive all along


@pytest.mark.parametrize(
    "error_type", [SystemExit, greenlet.GreenletExit], ids=["SystemExit", "GreenletExit"]
)
def test_every_close_callback_runs_before_a_base_exception_is_reraised(error_type, make_app, wrap, drive):
    """Bug 6: a close callback raising a non-Exception BaseException does not stop the others."""
    first, later = error_type("first"), error_type("later")
    ran: list[str] = []

    def raise_(error):
        def callback():
            ran.append(str(error))
            raise error

        return callback

    close = [raise_(first), lambda: ran.append("middle"), raise_(later)]
    app = make_app("list", during=registering(close=close))

    with pytest.raises(error_type) as raised:
        drive(wrap(app))

    assert ran == ["first", "middle", "later"]
    assert raised.value is first


def test_response_seen_by_a_local_callback_can_be_pickled(make_app, wrap, drive):
    """Bug 7: the header list a callback sees is a plain list, so the response pickles."""
    seen: dict[str, Any] = {}

    def cache(response):
        seen["type"] = type(response.headerlist)
        response.body  # noqa: B018 - as a caching callback does: a stream cannot be pickled
        seen["copy"] = pickle.loads(pickle.dumps(response))

    drive(wrap(make_app("list", during=registering(cache))))

    assert seen["type"] is list
    assert seen["copy"].body == b"hello world"


def test_twice_wrapped_app_takes_close_callbacks_from_a_later_chunk_in_both_forms(drive):
    """Bug 8: wrapped twice, call_on_close(environ=...) from a later chunk is taken, as by context."""
    log: list[Any] = []

    def app(environ, start_response):
        call_on_close(lambda: log.append("registered during the call"))  # the body gets wrapped
        start_response("200 OK", [TEXT])
        return stream(environ)

    def stream(environ) -> Iterator[bytes]:
        yield b"a"
        call_on_close(lambda: log.append("context form"))
        call_on_close(lambda: log.append("environ form"), environ=environ)
        yield b"b"

    sent = drive(validator(DeferMiddleware(DeferMiddleware(validator(app)))), log=log)

    assert sent.body == b"ab"
    assert [entry for entry in log if entry[0] != "server start_response"] == [
        ("server got", b"a"),
        ("server got", b"b"),
        "registered during the call",
        "context form",
        "environ form",
    ]


class AlwaysEqual:
    """A callback whose permissive __eq__ compares equal to anything (markers included)."""

    def __init__(self, ran: list[str]) -> None:
        self.ran = ran

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __call__(self, response: Response) -> None:
        self.ran.append("always-equal")
        after_this_request(lambda response: self.ran.append("registered by it"))


def test_callback_with_a_permissive_eq_may_register_another(make_app, wrap, drive):
    """Bug 9: identity, not equality, decides where the callback list ends."""
    ran: list[str] = []

    drive(wrap(make_app("list", during=registering(AlwaysEqual(ran)))))

    assert ran == ["always-equal", "registered by it"]


def test_testing_apply_sends_a_webob_exc_replacement_as_the_middleware_does(make_app, wrap, make_environ):
    """Bug 10: deferred().apply() with a webob.exc replacement returns its error page."""

    def forbid(response):
        return webob.exc.HTTPForbidden()

    page = TestApp(wrap(make_app("list", during=registering(forbid)))).get("/", status=403).body
    with deferred(make_environ()) as collected:
        after_this_request(forbid)
    response = collected.apply(Response(b"hello world"))
    collected.close()

    assert page
    assert response.status == "403 Forbidden"
    assert response.body == page


def generator_function() -> Iterator[None]:
    yield None


@pytest.mark.parametrize("register", [after_this_request, call_on_close], ids=lambda f: f.__name__)
def test_generator_function_is_refused_at_registration(register, make_environ):
    """Bug 11: a generator function would never run: registering one is a TypeError."""
    with deferred(make_environ()), pytest.raises(TypeError, match="generator"):
        register(generator_function)


def test_callback_closing_the_body_unread_closes_the_app_iterable_once(make_app, drive):
    """Bug 12: response.app_iter.close() in a callback, then the server's close: one close() in all."""
    counter = Counter()
    app = make_app("closing", counter=counter, during=registering(lambda response: response.app_iter.close()))
    # No validator: it fails any read after close(); what the server reads then is not the point here.
    drive(DeferMiddleware(app))

    assert counter.closes == 1


def test_raw_file_body_from_a_file_wrapper_goes_out_in_bounded_chunks(drive, make_environ):
    """Bug 13: a raw file body (uWSGI's file_wrapper) that deferware wraps is read in blocks, not lines."""
    data = b"x" * (4 * 1024 * 1024)  # no newline

    def app(environ, start_response):
        call_on_close(lambda: None)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(data), 8192)

    environ = make_environ(**{"wsgi.file_wrapper": lambda file, block_size=8192: file})
    sent = drive(DeferMiddleware(app), environ)  # a validator would iterate the file itself

    assert sent.body == data
    assert max(len(chunk) for chunk in sent.chunks) <= 64 * 1024


def test_pyramid_subrequest_with_environ_form_subscriber_succeeds(wrap):
    """Bug 14: environ= registration from a Pyramid sub-request lands on the outer response."""

    def on_new_request(event):
        path = event.request.path

        def mark(response):
            response.headers.add("X-Registered-For", path)

        after_this_request(mark, environ=event.request.environ)

    def outer(request):
        inner = request.invoke_subrequest(PyramidRequest.blank("/other"))
        return PyramidResponse(f"outer saw {inner.text}")

    with Configurator() as config:
        config.add_subscriber(on_new_request, NewRequest)
        config.add_route("outer", "/")
        config.add_route("other", "/other")
        config.add_view(outer, route_name="outer")
        config.add_view(lambda request: PyramidResponse("other"), route_name="other")
        app = config.make_wsgi_app()

    result = TestApp(wrap(app)).get("/")

    assert result.text == "outer saw other"
    assert result.headers.getall("X-Registered-For") == ["/", "/other"]
