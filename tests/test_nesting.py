"""DeferMiddleware(DeferMiddleware(app)): each layer has its own registry, and the
outer layer's environ entry is put back when the inner one returns."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pytest
from webtest import TestApp

from deferware import ENVIRON_KEY, DeferMiddleware, ResponseAlreadyStarted, after_this_request, call_on_close


def test_nested_middlewares_each_apply_their_own_callbacks(make_app, drive, make_environ):
    log = []
    seen = {}

    def register(environ):
        seen["inner registry"] = environ[ENVIRON_KEY]
        after_this_request(lambda response: log.append("inner callback"))
        after_this_request(lambda response: response.headers.add("X-Layer", "inner"))
        call_on_close(lambda: log.append("inner close"))

    inner = DeferMiddleware(make_app("lazy_generator", during=register))

    def middle(environ, start_response):
        seen["outer registry"] = environ[ENVIRON_KEY]
        body = inner(environ, start_response)
        seen["after inner"] = environ[ENVIRON_KEY]
        after_this_request(lambda response: log.append("outer callback"), environ=environ)
        after_this_request(lambda response: response.headers.add("X-Layer", "outer"))
        call_on_close(lambda: log.append("outer close"), environ=environ)
        return body

    sent = drive(DeferMiddleware(middle), make_environ())

    assert seen["inner registry"] is not seen["outer registry"]
    assert seen["after inner"] is seen["outer registry"]
    assert sent.header("X-Layer") == ["inner", "outer"]
    assert sent.body == b"hello world"
    assert log == ["inner callback", "outer callback", "inner close", "outer close"]


def test_same_app_wrapped_twice(make_app, wrap):
    def register(environ):
        after_this_request(lambda response: response.headers.add("X-Count", "1"))

    result = TestApp(DeferMiddleware(wrap(make_app("list", during=register)))).get("/")

    assert result.headers.getall("X-Count") == ["1"]
    assert result.body == b"hello world"


@pytest.mark.parametrize("first_registers", [False, True], ids=["first-idle", "first-hooked"])
def test_an_environ_used_again_is_not_taken_for_an_enclosing_request(first_registers, drive, make_environ):
    # webob's req.get_response(app) twice, or a test client reusing an environ:
    # the first request's registry is finished, not an outer middleware's. The
    # second request's registrations through environ= reach its own registry.
    ran = []
    requests = []

    def app(environ, start_response):
        requests.append(environ)
        if first_registers or len(requests) == 2:
            call_on_close(lambda: ran.append("own"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body(environ)

    def body(environ):
        yield b"x"
        call_on_close(lambda: ran.append("from the body, environ="), environ=environ)
        yield b"y"

    middleware = DeferMiddleware(app)
    environ = make_environ()
    first = middleware(environ, lambda status, headers, exc_info=None: None)
    if first_registers:
        assert b"".join(first) == b"xy"
    first.close()
    ran[:] = ["first done"]

    sent = drive(middleware, environ)

    assert sent.body == b"xy"
    assert ran == ["first done", "own", "from the body, environ="]


@pytest.mark.parametrize("inner_hooked", [False, True], ids=["inner-idle", "inner-hooked"])
@pytest.mark.parametrize("made_in", ["a later chunk", "close()"])
def test_a_sub_request_with_the_same_environ_from_a_streaming_body_puts_the_outer_registry_back(
    inner_hooked, made_in, drive, make_environ
):
    # The enclosing response went to the server with a close hook; its body (or
    # its close()) calls another wrapped application with the same environ.
    # Afterwards the environ holds the enclosing request's registry again.
    ran = []

    def inner_app(environ, start_response):
        if inner_hooked:
            call_on_close(lambda: ran.append("inner close"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"inner"]

    inner = DeferMiddleware(inner_app)

    class Body:
        def __init__(self, environ):
            self.environ = environ

        def __iter__(self):
            yield b"outer "
            if made_in == "a later chunk":
                yield self.sub_request()
                call_on_close(lambda: ran.append("outer close, environ="), environ=self.environ)

        def sub_request(self):
            sent = inner(self.environ, lambda status, headers, exc_info=None: None)
            try:
                return b"".join(sent)
            finally:
                getattr(sent, "close", lambda: None)()

        def close(self):
            if made_in == "close()":
                self.sub_request()
                ran.append(("registry after", self.environ[ENVIRON_KEY] is outer_registry[0]))

    outer_registry = []

    def outer_app(environ, start_response):
        outer_registry.append(environ[ENVIRON_KEY])
        call_on_close(lambda: ran.append("outer close"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body(environ)

    sent = drive(DeferMiddleware(outer_app), make_environ())

    expected_inner = ["inner close"] if inner_hooked else []
    if made_in == "a later chunk":
        assert sent.body == b"outer inner"
        assert ran == [*expected_inner, "outer close", "outer close, environ="]
    else:
        assert ran == [*expected_inner, ("registry after", True), "outer close"]


def sub_request_app(inner_body):
    """A wrapped inner application whose lazy body runs *inner_body()* in its
    second chunk, after its response was handed over without a close hook."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"inner "
        inner_body()
        yield b"body"

    return DeferMiddleware(app)


def add_outer_header(response):
    response.headers["X-Outer"] = "yes"


@pytest.mark.parametrize("pulled_in", ["the enclosing call", "the enclosing body"])
def test_a_sub_request_body_registers_with_its_own_request(pulled_in, drive, make_environ):
    """A sub-request's body pulled by the enclosing application (in its call,
    with the enclosing request active in the context; or in its own body) is a
    step of the sub-request: a registration there reaches the sub-request, which
    refuses it (its response was handed over), never the enclosing request."""
    errors = []

    def inner_body():
        for register in (lambda: after_this_request(add_outer_header), lambda: call_on_close(lambda: None)):
            try:
                register()
            except ResponseAlreadyStarted as exc:
                errors.append(exc)

    inner = sub_request_app(inner_body)

    def fetch(environ):
        sub_environ = dict(environ)
        sub_environ.pop(ENVIRON_KEY)
        body = inner(sub_environ, lambda status, headers, exc_info=None: None)
        try:
            return b"".join(body)
        finally:
            body.close()

    def outer(environ, start_response):
        call_on_close(lambda: None)  # the enclosing response is hooked: it would take close callbacks
        after_this_request(lambda response: None)  # ... and it runs callbacks
        start_response("200 OK", [("Content-Type", "text/plain")])
        if pulled_in == "the enclosing call":
            return [fetch(environ)]
        return (fetch(environ) for _ in range(1))

    sent = drive(DeferMiddleware(outer), make_environ())

    assert sent.body == b"inner body"
    assert sent.header("X-Outer") == []
    assert len(errors) == 2


def test_the_outer_requests_close_callbacks_run_when_the_inner_returns_a_wrapped_body() -> None:
    # The inner DeferMiddleware hands back its own body wrapper; the outer one
    # must still run its close callbacks (each request's once), not reuse the
    # inner wrapper as if it were its own.
    from support import drive

    ran: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        call_on_close(lambda: ran.append("inner"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"body"]

    inner = DeferMiddleware(app)

    def outer_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        call_on_close(lambda: ran.append("outer"))
        return inner(environ, start_response)

    sent = drive(DeferMiddleware(outer_app))

    assert sent.body == b"body"
    assert sorted(ran) == ["inner", "outer"]
