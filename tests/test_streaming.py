"""When callbacks run, and that streaming bodies stay streamed.

Callbacks run after the application called ``start_response`` and returned its
iterable (after its first chunk, for a lazy app), and before the server gets
the status and headers, which it gets exactly as the callbacks left them.
"""

from __future__ import annotations

import pytest
from webob import Response
from webtest import TestApp

from deferware import DeferMiddleware, after_this_request, call_on_close


def test_callbacks_run_after_the_app_returned_and_before_the_server_sees_headers(drive, make_environ):
    log = []

    def app(environ, start_response):
        after_this_request(lambda response: log.append(("callback", response.status)))
        start_response("200 OK", [("Content-Type", "text/plain")])
        log.append(("app", "start_response"))
        log.append(("app", "returns"))
        return [b"body"]

    drive(DeferMiddleware(app), log=log)

    assert log == [
        ("app", "start_response"),
        ("app", "returns"),
        ("callback", "200 OK"),
        ("server start_response", "200 OK"),
        ("server got", b"body"),
    ]


def test_lazy_app_callbacks_run_after_its_first_chunk_and_before_the_server_sees_headers(drive):
    log = []

    def app(environ, start_response):
        after_this_request(lambda response: log.append(("callback", response.status)))
        log.append(("app", "returns"))
        return lazy(start_response)

    def lazy(start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        log.append(("app", "start_response"))
        for number in (1, 2):
            log.append(("app produced", number))
            yield b"chunk %d" % number

    drive(DeferMiddleware(app), log=log)

    assert log == [
        ("app", "returns"),
        ("app", "start_response"),
        ("app produced", 1),
        ("callback", "200 OK"),
        ("server start_response", "200 OK"),
        ("server got", b"chunk 1"),
        ("app produced", 2),
        ("server got", b"chunk 2"),
    ]


@pytest.mark.parametrize("lazy", [pytest.param(False, id="eager"), pytest.param(True, id="lazy")])
def test_header_only_callback_keeps_streaming_and_chunk_boundaries(lazy, drive):
    log = []
    chunks = [b"one", b"", b"two", b"three"]

    def app(environ, start_response):
        @after_this_request
        def header_only(response):
            response.headers["X-Seen"] = "yes"

        if not lazy:
            start_response("200 OK", [("Content-Type", "text/plain")])
        return generate(start_response)

    def generate(start_response):
        if lazy:
            start_response("200 OK", [("Content-Type", "text/plain")])
        for number, chunk in enumerate(chunks, 1):
            log.append(("app produced", number))
            yield chunk

    sent = drive(DeferMiddleware(app), log=log)

    assert sent.chunks == chunks
    assert sent.header("X-Seen") == ["yes"]
    produced = [entry for entry in log if entry[0] != "server start_response"]
    assert produced == [
        entry
        for number, chunk in enumerate(chunks, 1)
        for entry in (("app produced", number), ("server got", chunk))
    ]


def test_streaming_body_is_not_pulled_ahead_through_the_validator(make_app, wrap, drive):
    log = []

    def register(environ):
        after_this_request(lambda response: response.headers.add("X-Seen", "yes"))

    inner = make_app("eager_generator", during=register)

    def app(environ, start_response):
        for chunk in inner(environ, start_response):
            log.append(("app produced", chunk))
            yield chunk

    # A generator wrapping an eager app is lazy: start_response runs on the first pull.
    sent = drive(wrap(app), log=log)

    assert sent.chunks == [b"hello", b" ", b"world"]
    got = [entry for entry in log if entry[0] != "server start_response"]
    assert got == [(kind, chunk) for chunk in sent.chunks for kind in ("app produced", "server got")]


def test_server_gets_the_final_status_and_headers_in_one_start_response(shape, make_app, wrap, drive):
    def register(environ):
        @after_this_request
        def redirect(response):
            response.status = "303 See Other"
            response.headers["Location"] = "/elsewhere?x=1"
            response.headers.add("Set-Cookie", "a=1")
            response.headers.add("Set-Cookie", "b=2")

    sent = drive(wrap(make_app(shape, during=register)))

    assert sent.start_response_calls == 1
    assert sent.status == "303 See Other"
    assert sent.headers == [
        ("Content-Type", "text/plain; charset=UTF-8"),
        ("Location", "/elsewhere?x=1"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]
    assert type(sent.headers) is list


def test_relative_location_stays_relative_seen_from_outside(make_app, wrap):
    def register(environ):
        @after_this_request
        def redirect(response):
            response.status = "302 Found"
            response.location = "../relative/path"

    result = TestApp(wrap(make_app("list", during=register))).get("/some/page", status=302)

    assert result.headers["Location"] == "../relative/path"


def test_head_response_keeps_the_apps_headers_and_sends_no_body(make_app, wrap, drive, make_environ):
    # No body byte goes out on HEAD once callbacks ran (servers send what they
    # are given); the application's own Content-Length, the GET length, stays.
    def register(environ):
        after_this_request(lambda response: response.headers.add("X-Seen", "yes"))

    sent = drive(
        wrap(
            make_app(
                "list", during=register, headers=[("Content-Type", "text/plain"), ("Content-Length", "11")]
            )
        ),
        make_environ(method="HEAD"),
    )

    assert sent.status == "200 OK"
    assert sent.headers == [("Content-Type", "text/plain"), ("Content-Length", "11"), ("X-Seen", "yes")]
    assert sent.chunks == []


def _fail(response):
    raise RuntimeError("rolled back")


@pytest.mark.parametrize("before", [None, _fail], ids=["wrapper-only", "after-a-rollback"])
def test_a_body_streamed_through_a_callbacks_wrapper_is_not_kept_under_the_log_policy(before):
    # Under on_callback_error="log" nothing of the body is kept: once the
    # callbacks ran, it streams (16 MiB here, in distinct chunks), also when
    # a failed callback was rolled back first.
    import tracemalloc

    chunk_size, count = 16 * 1024, 1024

    def app(environ, start_response):
        def wrap_body(response):
            response.app_iter = (chunk for chunk in response.app_iter)

        if before is not None:
            after_this_request(before)
        after_this_request(wrap_body)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (bytes(chunk_size) for _ in range(count))

    middleware = DeferMiddleware(app, on_callback_error="log")
    tracemalloc.start()
    try:
        body = middleware({"REQUEST_METHOD": "GET"}, lambda status, headers, exc_info=None: None)
        received = 0
        for chunk in body:
            received += len(chunk)
        body.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert received == chunk_size * count
    assert peak < 1024 * 1024


def test_a_pipe_body_deferware_wraps_still_streams():
    # A file-like body read in blocks must not wait for a whole block on a pipe
    # (a subprocess's output): each line goes out as it arrives, as unwrapped.
    import os
    import threading

    read_end, write_end = os.pipe()
    first_arrived = threading.Event()

    def writer():
        os.write(write_end, b"first line\n")
        first_arrived.wait(timeout=5)  # bounded: a blocked reader gets both lines at once
        os.write(write_end, b"second line\n")
        os.close(write_end)

    def app(environ, start_response):
        call_on_close(lambda: None)  # deferware wraps the body
        start_response("200 OK", [("Content-Type", "text/plain")])
        return os.fdopen(read_end, "rb")

    thread = threading.Thread(target=writer)
    thread.start()
    body = DeferMiddleware(app)({"REQUEST_METHOD": "GET"}, lambda status, headers, exc_info=None: None)
    try:
        chunks = iter(body)
        first = next(chunks)
        first_arrived.set()
        rest = b"".join(chunks)
    finally:
        first_arrived.set()
        thread.join(timeout=10)
        body.close()
    assert (first, rest) == (b"first line\n", b"second line\n")


# Each shape is tried with the request still taking registrations (a close
# callback pending: the body binds it around each chunk) and with nothing to
# take any more (the server pulls the chunks as they are).
CLOSE_PENDING = pytest.mark.parametrize("close_pending", [True, False], ids=["bound", "unbound"])


def _serve(app, close_pending):
    def wrapped(environ, start_response):
        if close_pending:
            call_on_close(lambda: None)
        return app(environ, start_response)

    return DeferMiddleware(wrapped)({"REQUEST_METHOD": "GET"}, lambda status, headers, exc_info=None: None)


@CLOSE_PENDING
@pytest.mark.parametrize("shape", ["write", "lazy"])
def test_a_second_pass_over_the_body_goes_on_where_the_first_stopped(shape, close_pending):
    # Chunks kept before the iterable (write() data for the callbacks, or what
    # priming a lazy app pulled) are sent once, whichever pass sends them.
    def app(environ, start_response):
        after_this_request(lambda response: None)
        if shape == "write":
            write = start_response("200 OK", [("Content-Type", "text/plain")])
            write(b"1")
            write(b"2")
            return [b"3"]
        return lazy(start_response)

    def lazy(start_response):
        yield b""
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"2"
        yield b"3"

    body = _serve(app, close_pending)
    first = next(iter(body))
    rest = list(body)
    body.close()

    assert [first, *rest] == ([b"1", b"2", b"3"] if shape == "write" else [b"", b"2", b"3"])


class Chunks:
    """An iterable object (not a generator) that records what was pulled from it."""

    def __init__(self):
        self.pulled = []

    def __iter__(self):
        for chunk in (b"p", b"q", b"r"):
            self.pulled.append(chunk)
            yield chunk


@CLOSE_PENDING
@pytest.mark.parametrize("closed", ["mid-iteration", "before-iteration"])
def test_nothing_is_pulled_from_a_body_after_its_close(closed, close_pending):
    chunks = Chunks()

    def app(environ, start_response):
        after_this_request(lambda response: Response(app_iter=chunks))  # a body deferware must wrap
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"replaced"]

    body = _serve(app, close_pending)
    steps = iter(body)
    if closed == "mid-iteration":
        assert next(steps) == b"p"
    body.close()

    assert list(steps) == []
    assert chunks.pulled == ([b"p"] if closed == "mid-iteration" else [])


class Cursor:
    """An iterator with ``__next__`` only: ``iter()`` and a server's ``for`` accept what
    returns it from ``__iter__``, but calling ``iter()`` on the cursor itself fails."""

    def __init__(self):
        self.parts = [b"part1;", b"part2;"]

    def __next__(self):
        if not self.parts:
            raise StopIteration
        return self.parts.pop(0)


class CursorBody:
    def __iter__(self):
        return Cursor()


def test_an_iterator_without_iter_of_its_own_is_sent_whole():
    def app(environ, start_response):
        after_this_request(lambda response: None)
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"head;")  # kept for the callbacks: the body is wrapped
        return CursorBody()

    body = DeferMiddleware(app)({"REQUEST_METHOD": "GET"}, lambda status, headers, exc_info=None: None)
    try:
        assert list(body) == [b"head;", b"part1;", b"part2;"]
    finally:
        body.close()
