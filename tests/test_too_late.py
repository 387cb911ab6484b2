"""Registrations that could never take effect raise ResponseAlreadyStarted
instead of being dropped silently."""

from __future__ import annotations

import pytest
from support import BODY

from deferware import (
    DeferMiddleware,
    NoActiveRequest,
    ResponseAlreadyStarted,
    after_this_request,
    call_on_close,
)


def _noop(*args):
    return None


@pytest.mark.parametrize("registered_before", [False, True], ids=["nothing-before", "callback-before"])
@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_after_this_request_from_the_body_iteration_is_too_late(lazy, registered_before, drive):
    errors = []

    def app(environ, start_response):
        if registered_before:
            after_this_request(_noop)
        if not lazy:
            start_response("200 OK", [("Content-Type", "text/plain")])
        return generate(environ, start_response)

    def generate(environ, start_response):
        if lazy:
            start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first"
        try:
            after_this_request(_noop, environ=environ)
        except ResponseAlreadyStarted as error:
            errors.append(error)
        yield b"second"

    sent = drive(DeferMiddleware(app))

    assert sent.chunks == [b"first", b"second"]
    [error] = errors
    assert "came too late" in str(error)
    assert "call_on_close()" in str(error)


def test_after_this_request_with_environ_after_the_request_is_too_late(make_app, drive, make_environ):
    environ = make_environ()
    drive(DeferMiddleware(make_app("list")), environ)

    with pytest.raises(ResponseAlreadyStarted, match=r"after_this_request\(.*\) came too late"):
        after_this_request(_noop, environ=environ)


def test_after_this_request_after_callbacks_ran_is_too_late(make_app, drive, make_environ):
    environ = make_environ()
    ran = []

    def register(environ):
        after_this_request(lambda response: ran.append("callback"))

    drive(DeferMiddleware(make_app("list", during=register)), environ)

    with pytest.raises(ResponseAlreadyStarted, match="came too late"):
        after_this_request(lambda response: ran.append("late"), environ=environ)
    assert ran == ["callback"]


def test_after_this_request_after_the_app_raised_is_too_late(make_app, drive, make_environ):
    environ = make_environ()
    app = make_app("list", fault="after_start_response", error=ZeroDivisionError())

    with pytest.raises(ZeroDivisionError):
        drive(DeferMiddleware(app), environ)

    with pytest.raises(ResponseAlreadyStarted, match="came too late"):
        after_this_request(_noop, environ=environ)


@pytest.mark.parametrize("registered_before", [False, True], ids=["nothing-before", "callback-before"])
@pytest.mark.parametrize("shape", ["eager_generator", "lazy_generator"])
@pytest.mark.parametrize("api", [after_this_request, call_on_close])
def test_the_context_form_from_a_later_chunk_says_it_runs_outside_the_request(
    api, shape, registered_before, make_app, drive
):
    # With no call_on_close pending, nothing can be registered once the response
    # is handed over: the server pulls the later chunks as they are, whether the
    # body is the application's own (eager) or one deferware wrapped (lazy, or
    # with a callback), so the context form finds no request, in every shape.
    errors = []

    def later():
        try:
            api(_noop)
        except NoActiveRequest as error:
            errors.append(error)

    def during(environ):
        if registered_before:
            after_this_request(_noop)

    sent = drive(DeferMiddleware(make_app(shape, during=during, later=later)))

    assert sent.chunks == list(BODY)
    [error] = errors
    assert "chunks a server pulls from a response body once nothing can be registered" in str(error)


def test_call_on_close_after_close_ran_is_too_late(make_app, drive, make_environ):
    environ = make_environ()
    ran = []

    def register(environ):
        call_on_close(lambda: ran.append("close"))

    drive(DeferMiddleware(make_app("list", during=register)), environ)

    with pytest.raises(
        ResponseAlreadyStarted,
        match=r"call_on_close\(.*\) came too late: the close callbacks of this response already ran",
    ):
        call_on_close(lambda: ran.append("late"), environ=environ)
    assert ran == ["close"]


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_call_on_close_from_the_body_without_a_close_hook_is_too_late(lazy, drive):
    # Nothing was registered when the response was handed over, so nothing of
    # deferware's will see close(): a close callback could never run.
    errors = []

    def app(environ, start_response):
        if not lazy:
            start_response("200 OK", [("Content-Type", "text/plain")])
        return generate(environ, start_response)

    def generate(environ, start_response):
        if lazy:
            start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first"
        try:
            call_on_close(_noop, environ=environ)
        except ResponseAlreadyStarted as error:
            errors.append(error)
        yield b"second"

    sent = drive(DeferMiddleware(app))

    assert sent.chunks == [b"first", b"second"]
    [error] = errors
    assert "without a close hook" in str(error)


def test_call_on_close_from_the_body_with_a_close_hook_runs(drive):
    log = []

    def app(environ, start_response):
        call_on_close(lambda: log.append("registered in the app"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body()

    def body():
        yield b"first"
        call_on_close(lambda: log.append("registered in the body"))
        yield b"second"

    drive(DeferMiddleware(app))

    assert log == ["registered in the app", "registered in the body"]
