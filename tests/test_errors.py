"""Errors: from the application (callbacks dropped, exception unchanged) and from
callbacks (on_callback_error="raise" propagates, "log" logs and rolls back)."""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from support import EARLY_FAILURES
from webob import Request, Response
from webtest import TestApp

from deferware import DeferMiddleware, InvalidHeader, after_this_request, call_on_close


class Boom(Exception):
    pass


@pytest.mark.parametrize("when", EARLY_FAILURES)
def test_app_exception_drops_callbacks_and_propagates_unchanged(when, make_app, drive):
    error = Boom("app failed")
    ran = []

    def register(environ):
        after_this_request(lambda response: ran.append("callback"))

    with pytest.raises(Boom) as caught:
        shape, fault = EARLY_FAILURES[when]
        drive(DeferMiddleware(make_app(shape, fault=fault, error=error, during=register)))

    assert caught.value is error
    assert ran == []


@pytest.mark.parametrize("when", EARLY_FAILURES)
def test_app_base_exception_propagates_unchanged(when, make_app, drive):
    error = KeyboardInterrupt()
    shape, fault = EARLY_FAILURES[when]

    with pytest.raises(KeyboardInterrupt) as caught:
        drive(DeferMiddleware(make_app(shape, fault=fault, error=error)))

    assert caught.value is error


def test_callback_exception_propagates_by_default_after_cleanup(shape, make_app, counted, drive):
    error = Boom("callback failed")
    log = []

    def failing(response):
        raise error

    def register(environ):
        call_on_close(lambda: log.append("closed"))
        after_this_request(failing)
        after_this_request(lambda response: log.append("later callback"))

    app = counted(make_app(shape, during=register))

    with pytest.raises(Boom) as caught:
        drive(DeferMiddleware(app))

    assert caught.value is error
    assert app.body.close_calls == 1
    assert log == ["closed"]


def _bad_status(response):
    response.status = "299 Partial"
    response.headers["X-Half"] = "done"
    raise Boom("after changing status and headers")


def _bad_body(response):
    response.headers["X-Half"] = "done"
    response.body = b"half-written"
    raise Boom("after changing the body")


def _bad_read(response):
    response.status = "299 Partial"
    response.text = response.text.upper()
    raise Boom("after reading and changing the body")


def _bad_return(response):
    response.headers["X-Half"] = "done"
    return "not a response"


def _bad_header(response):
    response.headers["X-Half"] = "done"
    response.headers["X-Evil"] = "a\r\nSet-Cookie: injected=1"


@pytest.mark.parametrize(
    ("failing", "expected_body", "log_match"),
    [
        pytest.param(_bad_status, b"hello world", "Boom: after changing status", id="status-and-headers"),
        pytest.param(_bad_body, b"hello world", "Boom: after changing the body", id="body"),
        pytest.param(_bad_return, b"hello world", "TypeError: .*_bad_return returned", id="bad-return"),
        pytest.param(_bad_header, b"hello world", "InvalidHeader", id="invalid-header"),
    ],
)
def test_logged_callback_error_rolls_back_that_callback_only(
    failing, expected_body, log_match, shape, make_app, wrap, drive, caplog
):
    ran = []

    def register(environ):
        after_this_request(lambda response: response.headers.add("X-Before", "1"))
        after_this_request(failing)

        @after_this_request
        def later(response):
            ran.append((response.status, response.headers.get("X-Half")))
            response.headers.add("X-After", "1")

    with caplog.at_level(logging.ERROR, logger="deferware"):
        sent = drive(wrap(make_app(shape, during=register), on_callback_error="log"))

    assert ran == [("200 OK", None)]
    assert sent.status == "200 OK"
    assert sent.header("X-Before") == ["1"]
    assert sent.header("X-After") == ["1"]
    assert sent.header("X-Half") == []
    assert sent.header("Set-Cookie") == []
    assert sent.body == expected_body
    [record] = [record for record in caplog.records if record.name == "deferware"]
    assert record.levelno == logging.ERROR
    assert failing.__name__ in record.getMessage()
    assert record.exc_text is not None
    assert re.search(log_match, record.exc_text)


def test_logged_callback_error_as_last_callback_keeps_earlier_changes(make_app, wrap, caplog):
    def register(environ):
        after_this_request(lambda response: response.headers.add("X-Before", "1"))
        after_this_request(_bad_status)

    with caplog.at_level(logging.ERROR, logger="deferware"):
        result = TestApp(wrap(make_app("list", during=register), on_callback_error="log")).get("/")

    assert result.status == "200 OK"
    assert result.headers["X-Before"] == "1"
    assert "X-Half" not in result.headers
    assert [record.levelname for record in caplog.records if record.name == "deferware"] == ["ERROR"]


def test_logged_error_after_a_replacement_keeps_the_replacement(make_app, wrap, drive, caplog):
    def register(environ):
        after_this_request(lambda response: Response(b"replaced", content_type="text/plain"))
        after_this_request(_bad_status)

    with caplog.at_level(logging.ERROR, logger="deferware"):
        sent = drive(wrap(make_app("eager_generator", during=register), on_callback_error="log"))

    assert sent.status == "200 OK"
    assert sent.body == b"replaced"
    assert sent.header("X-Half") == []


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        pytest.param(
            lambda r: r.headers.__setitem__("X-Evil", "a\r\nX-Injected: 1"), "X-Evil", id="crlf-in-value"
        ),
        pytest.param(lambda r: r.headers.__setitem__("X-Nul", "a\x00b"), "X-Nul", id="nul-in-value"),
        pytest.param(lambda r: r.headers.__setitem__("Bad Name", "v"), "Bad Name", id="space-in-name"),
        pytest.param(lambda r: r.headers.__setitem__("X-Snow", "\u2603"), "X-Snow", id="not-latin-1"),
        pytest.param(lambda r: setattr(r, "headerlist", [("X-Evil", "a\nb")]), "X-Evil", id="new-headerlist"),
        pytest.param(
            lambda r: Response(headerlist=[("X-Evil", "a\rb")]), "X-Evil", id="replacement-response"
        ),
        pytest.param(lambda r: setattr(r, "status", "200 OK\r\nX-Injected: 1"), "status", id="status"),
    ],
)
def test_unsafe_header_from_a_callback_is_invalid_header(mutate, match, make_app, drive):
    def register(environ):
        after_this_request(mutate)

    with pytest.raises(InvalidHeader, match=match):
        drive(DeferMiddleware(make_app("list", during=register)))


def _peek_then_fail(response):
    next(iter(response.app_iter))
    raise Boom("after reading one chunk")


def _iter_only(response):
    iter(response.app_iter)


def _wrap_in_a_generator_expression(response):
    response.app_iter = (chunk.upper() for chunk in response.app_iter)  # calls iter(), reads nothing


def _fail(response):
    raise Boom("a callback failed")


@pytest.mark.parametrize("reads", [_iter_only, _wrap_in_a_generator_expression])
def test_logged_error_after_starting_but_not_reading_the_body_sends_it_whole(
    reads, shape, make_app, wrap, drive, caplog
):
    # iter() alone advances nothing: the rollback gives the body back whole.
    def read_then_fail(response):
        reads(response)
        raise Boom("after going over the body")

    def register(environ):
        after_this_request(read_then_fail)

    with caplog.at_level(logging.ERROR, logger="deferware"):
        sent = drive(wrap(make_app(shape, during=register), on_callback_error="log"))

    assert sent.body == b"hello world"
    assert "after going over the body" in caplog.text


def _extend_then_fail(response):
    response.body = response.body + b"!"
    raise Boom("after rewriting the body")


def _write_then_fail(response):
    response.write(b"X")  # WebOb reads a streaming body into a list first
    raise Boom("after writing")


class Transform:
    """A body wrapper a callback sets (a compressor, say): iterates what it wraps."""

    def __init__(self, inner):
        self.inner = inner

    def __iter__(self):
        return iter(self.inner)

    def close(self):
        getattr(self.inner, "close", lambda: None)()


def _wrap_body(response):
    response.app_iter = Transform(response.app_iter)


def _generator_replacement(response):
    return Response(app_iter=(chunk for chunk in [b"gen", b"erated"]), content_type="text/plain")


def _read_all(response):
    assert response.body


def test_logged_error_after_an_earlier_callback_read_the_body_sends_what_it_left(
    shape, make_app, wrap, drive, caplog
):
    # WebOb keeps the body a callback read as response.body: a later failure
    # rolls back to it, and nothing is lost.
    def register(environ):
        after_this_request(_read_all)
        after_this_request(_fail)

    with caplog.at_level(logging.ERROR, logger="deferware"):
        sent = drive(wrap(make_app(shape, during=register), on_callback_error="log"))

    assert sent.body == b"hello world"
    assert "a callback failed" in caplog.text


@pytest.mark.parametrize(
    "callbacks",
    [
        pytest.param([_peek_then_fail], id="peek"),
        pytest.param([lambda response: response.body and _fail(response)], id="read-all"),
        pytest.param([_extend_then_fail], id="read-and-rewrite"),
        pytest.param([_write_then_fail], id="write"),
        pytest.param([_wrap_body, _peek_then_fail], id="read-through-a-wrapper"),
        pytest.param([_generator_replacement, _peek_then_fail], id="read-a-replacement-generator"),
    ],
)
def test_logged_error_after_advancing_a_streaming_body_propagates(callbacks, shape, counted, make_app, drive):
    # What the failed callback pulled is gone: a rollback would send a body that
    # silently lacks it. The error propagates as under "raise"; bodies closed once.
    def register(environ):
        for callback in callbacks:
            after_this_request(callback)
        call_on_close(lambda: log.append("closed"))

    log: list[str] = []
    app = counted(make_app(shape, during=register))
    with pytest.raises(Boom):
        drive(DeferMiddleware(app, on_callback_error="log"))

    assert app.body.close_calls == 1
    assert log == ["closed"]


def _replace_with_r(response):
    return Response(app_iter=[b"R"], content_type="text/plain")


def _keep(response):
    pass


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        pytest.param(_replace_with_r, b"R", id="write-to-a-replacement-list"),
        pytest.param(_keep, b"hello world", id="write-to-the-apps-list"),
    ],
)
def test_logged_error_undoes_a_write_to_a_list_body(first, expected, make_app, drive, caplog):
    def register(environ):
        after_this_request(first)
        after_this_request(_write_then_fail)

    app = make_app("list", during=register)
    with caplog.at_level(logging.ERROR, logger="deferware"):
        sent = drive(DeferMiddleware(app, on_callback_error="log"))

    assert sent.body == expected
    assert sent.header("Content-Length") in ([], [str(len(expected))])
    assert "Boom" in caplog.text


class FailingBody:
    """An application body that fails when iterated (a database gone away)."""

    def __init__(self, when):
        self.when = when
        self.close_calls = 0

    def __iter__(self):
        if self.when == "start":
            raise ConnectionError("database went away")
        return self.chunks()

    def chunks(self):
        yield b"first row\n"
        raise ConnectionError("database went away")

    def close(self):
        self.close_calls += 1


@pytest.mark.parametrize("when", ["start", "mid-body"])
@pytest.mark.parametrize("policy", ["raise", "log"])
def test_the_applications_body_failing_under_a_callbacks_read_propagates(when, policy, drive, caplog):
    # Not a callback error: under "log" too, the application's failure surfaces,
    # instead of a rolled-back, truncated body under the application's
    # Content-Length. Its iterable is still closed once.
    body = FailingBody(when)

    def app(environ, start_response):
        after_this_request(lambda response: response.body)
        start_response("200 OK", [("Content-Type", "text/csv"), ("Content-Length", "1000")])
        return body

    with caplog.at_level(logging.ERROR, logger="deferware"):
        with pytest.raises(ConnectionError, match="database went away"):
            drive(DeferMiddleware(app, on_callback_error=policy))

    assert body.close_calls == 1
    assert "callback" not in caplog.text  # not logged as a callback's error


@pytest.mark.parametrize(
    ("request_header", "value"), [("HTTP_IF_NONE_MATCH", '"v1"'), ("HTTP_RANGE", "bytes=0-3")]
)
def test_logged_error_undoes_a_conditional_response_the_callback_asked_for(
    request_header, value, drive, make_environ, caplog
):
    def failing(response):
        response.conditional_response = True
        raise Boom("the cache layer failed")

    def app(environ, start_response):
        after_this_request(failing)
        start_response("200 OK", [("Content-Type", "text/plain"), ("ETag", '"v1"'), ("Content-Length", "9")])
        return [b"full page"]

    with caplog.at_level(logging.ERROR, logger="deferware"):
        sent = drive(DeferMiddleware(app, on_callback_error="log"), make_environ(**{request_header: value}))

    assert (sent.status, sent.body) == ("200 OK", b"full page")
    assert "the cache layer failed" in caplog.text


def test_the_logged_error_names_the_request(make_app, drive, make_environ, caplog):
    def register(environ):
        after_this_request(_fail)

    with caplog.at_level(logging.ERROR, logger="deferware"):
        drive(
            DeferMiddleware(make_app("list", during=register), on_callback_error="log"), make_environ("/cart")
        )

    assert "GET '/cart': after_this_request callback" in caplog.text


def test_a_debug_line_says_which_callbacks_ran(make_app, drive, make_environ, caplog):
    def register(environ):
        after_this_request(_read_all)
        after_this_request(_iter_only)

    with caplog.at_level(logging.DEBUG, logger="deferware"):
        drive(DeferMiddleware(make_app("list", during=register)), make_environ("/cart"))

    [line] = [record.getMessage() for record in caplog.records if record.levelno == logging.DEBUG]
    assert (
        line
        == "GET '/cart': ran after_this_request callbacks ['test_errors._read_all', 'test_errors._iter_only']"
    )


def test_logged_error_after_a_worker_thread_advanced_a_sub_requests_body_propagates(drive):
    # The replacement is a wrapped sub-request's body, whose own request can take
    # nothing more; the failing callback pulls a chunk of it in a worker thread,
    # where no request is active. That pull still counts as advancing the body.
    def inner_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield from (b"chunk0;", b"chunk1;", b"chunk2;")

    inner = DeferMiddleware(inner_app)

    def sub_request(response):
        return Request.blank("/sub").get_response(inner)

    def read_in_a_worker_then_fail(response):
        with ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: next(iter(response.app_iter))).result()
        raise Boom("after a worker read one chunk")

    def app(environ, start_response):
        after_this_request(sub_request)
        after_this_request(read_in_a_worker_then_fail)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"outer"]

    with pytest.raises(Boom):
        drive(DeferMiddleware(app, on_callback_error="log"))
