"""Data passed to the legacy write() callable is kept, in order, before the
iterable's items, whatever the callbacks do."""

from __future__ import annotations

import pytest
from webtest import TestApp

from deferware import DeferMiddleware, after_this_request


def _header(response):
    response.headers["X-Seen"] = "yes"


def _read(response):
    assert response.body == b"w1w2i1i2"


def _rewrite(response):
    response.body = response.body.replace(b"w", b"W")


CALLBACKS = [
    pytest.param(None, b"w1w2i1i2", id="no-callback"),
    pytest.param(_header, b"w1w2i1i2", id="header-callback"),
    pytest.param(_read, b"w1w2i1i2", id="body-reading-callback"),
    pytest.param(_rewrite, b"W1W2i1i2", id="body-rewriting-callback"),
]


def write_app(callback, iterable_kind):
    def app(environ, start_response):
        if callback is not None:
            after_this_request(callback)
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"w1")
        write(b"w2")
        if iterable_kind == "generator":
            return (chunk for chunk in [b"i1", b"i2"])
        return [b"i1", b"i2"]

    return app


@pytest.mark.parametrize("iterable_kind", ["list", "generator"])
@pytest.mark.parametrize(("callback", "expected"), CALLBACKS)
def test_write_data_comes_first_and_in_order(callback, expected, iterable_kind, wrap, drive):
    sent = drive(wrap(write_app(callback, iterable_kind)))

    assert sent.body == expected
    if callback in (None, _header):
        assert sent.chunks == [b"w1", b"w2", b"i1", b"i2"]
    if callback is _header:
        assert sent.header("X-Seen") == ["yes"]


@pytest.mark.parametrize(("callback", "expected"), CALLBACKS)
def test_write_data_seen_from_outside(callback, expected, wrap):
    result = TestApp(wrap(write_app(callback, "list"))).get("/")

    assert result.body == expected
    if "Content-Length" in result.headers:
        assert int(result.headers["Content-Length"]) == len(expected)


def test_write_from_a_lazy_generator_before_its_first_chunk_is_kept(drive):
    def app(environ, start_response):
        after_this_request(_header)
        return lazy(start_response)

    def lazy(start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"w1")
        yield b"i1"
        yield b"i2"

    sent = drive(DeferMiddleware(app))

    assert sent.chunks == [b"w1", b"i1", b"i2"]


def test_write_while_a_callback_reads_the_body_is_an_error_not_lost_data(drive):
    # The body generator calls write() while a callback pulls it: that data has
    # no place in the body being read, so it is refused loudly, never dropped.
    def app(environ, start_response):
        after_this_request(lambda response: response.body)
        write = start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"a"
            write(b"b")
            yield b"c"

        return body()

    with pytest.raises(RuntimeError, match=r"write\(\) was called while an after_this_request callback"):
        drive(DeferMiddleware(app))
