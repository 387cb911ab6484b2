"""start_response(..., exc_info): before the callbacks ran the later status and
headers win (callbacks see the error response); after write() it is re-raised;
after the hand-over the server decides, as it would without deferware."""

from __future__ import annotations

import sys

import pytest
from webtest import TestApp

from deferware import DeferMiddleware, after_this_request

ERROR_HEADERS = [("Content-Type", "text/plain"), ("X-Error", "yes")]


class Boom(Exception):
    pass


def _error_response(start_response):
    try:
        raise Boom("while rendering")
    except Boom:
        start_response("500 Internal Server Error", list(ERROR_HEADERS), sys.exc_info())
    return [b"error page"]


@pytest.mark.parametrize("lazy", [pytest.param(False, id="eager"), pytest.param(True, id="lazy")])
def test_exc_info_before_headers_went_out_replaces_status_and_headers(lazy, wrap):
    seen = []

    def app(environ, start_response):
        after_this_request(lambda response: seen.append((response.status, response.headers.get("X-Error"))))
        if lazy:
            return generate(start_response)
        start_response("200 OK", [("Content-Type", "text/html"), ("X-Ok", "yes")])
        return _error_response(start_response)

    def generate(start_response):
        start_response("200 OK", [("Content-Type", "text/html"), ("X-Ok", "yes")])
        yield from _error_response(start_response)

    result = TestApp(wrap(app)).get("/", status=500)

    assert seen == [("500 Internal Server Error", "yes")]
    assert result.headers["X-Error"] == "yes"
    assert "X-Ok" not in result.headers
    assert result.body == b"error page"


def test_exc_info_before_headers_went_out_without_callbacks(drive):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        return _error_response(start_response)

    sent = drive(DeferMiddleware(app))

    assert sent.status == "500 Internal Server Error"
    assert sent.headers == ERROR_HEADERS
    assert sent.start_response_calls == 1


@pytest.mark.parametrize("with_callback", [False, True], ids=["no-callback", "callback"])
@pytest.mark.parametrize("lazy", [pytest.param(False, id="eager"), pytest.param(True, id="lazy")])
def test_exc_info_after_the_first_chunk_is_re_raised(lazy, with_callback, drive):
    error = Boom("after the first chunk")

    def app(environ, start_response):
        if with_callback:
            after_this_request(lambda response: None)
        if not lazy:
            start_response("200 OK", [("Content-Type", "text/plain")])
        return generate(start_response)

    def generate(start_response):
        if lazy:
            start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first chunk"
        try:
            raise error
        except Boom:
            start_response("500 Internal Server Error", list(ERROR_HEADERS), sys.exc_info())
        yield b"never sent"  # pragma: no cover - start_response re-raises

    with pytest.raises(Boom) as caught:
        drive(DeferMiddleware(app))

    assert caught.value is error


def test_exc_info_after_write_is_re_raised(drive):
    error = Boom("after write")
    ran = []

    def app(environ, start_response):
        after_this_request(lambda response: ran.append("callback"))
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written")
        try:
            raise error
        except Boom:
            start_response("500 Internal Server Error", list(ERROR_HEADERS), sys.exc_info())
        return [b"never sent"]  # pragma: no cover - start_response re-raises

    with pytest.raises(Boom) as caught:
        drive(DeferMiddleware(app))

    assert caught.value is error
    assert ran == []


@pytest.mark.parametrize("with_callback", [False, True], ids=["no-callback", "callback"])
def test_exc_info_after_hand_over_but_before_any_body_byte_is_the_servers_to_decide(with_callback, drive):
    # The app returned a generator that fails before its first chunk: the server
    # has the status and headers but sent nothing yet, so (PEP 3333) it replaces
    # them with the error response, as it would without deferware.
    def app(environ, start_response):
        if with_callback:
            after_this_request(lambda response: response.headers.__setitem__("X-Seen", "yes"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return generate(start_response)

    def generate(start_response):
        yield from _error_response(start_response)

    sent = drive(DeferMiddleware(app))

    assert sent.status == "500 Internal Server Error"
    assert sent.headers == ERROR_HEADERS
    assert sent.body == b"error page"
    assert sent.start_response_calls == 2
