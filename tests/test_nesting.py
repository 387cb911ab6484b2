"""DeferMiddleware(DeferMiddleware(app)): each layer has its own registry, and the
outer layer's environ entry is put back when the inner one returns."""

from __future__ import annotations

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
