"""close(): the application's iterable is closed exactly once on every path, and
call_on_close callbacks run exactly once, in order, after the body is done."""

from __future__ import annotations

import logging

import pytest
from support import EARLY_FAILURES, Counted, Counter
from webob import Response

from deferware import DeferMiddleware, after_this_request, call_on_close


class Boom(Exception):
    pass


def _header(response):
    response.headers["X-Seen"] = "yes"


def _replace(response):
    return Response(b"replaced", content_type="text/plain")


def _read_body(response):
    response.body = response.body.upper()


def _raise(response):
    raise Boom("callback failed")


PATHS = [
    pytest.param([], {}, None, None, id="no-callbacks"),
    pytest.param([_header], {}, None, None, id="header-callback"),
    pytest.param([_replace], {}, None, None, id="callback-replaces-response"),
    pytest.param([_read_body], {}, None, None, id="callback-rewrites-body"),
    pytest.param([_raise], {}, Boom, None, id="callback-raises"),
    pytest.param([_header, _raise], {"on_callback_error": "log"}, None, None, id="callback-raises-logged"),
    pytest.param([], {}, None, 1, id="server-closes-early"),
    pytest.param([_header], {}, None, 1, id="server-closes-early-with-callback"),
]


@pytest.mark.parametrize(("callbacks", "options", "error", "stop_after"), PATHS)
@pytest.mark.parametrize("with_close_callback", [False, True], ids=["", "call_on_close"])
def test_app_iterable_is_closed_exactly_once_on_every_path(
    callbacks, options, error, stop_after, with_close_callback, shape, make_app, counted, drive, caplog
):
    closed = []

    def register(environ):
        for func in callbacks:
            after_this_request(func)
        if with_close_callback:
            call_on_close(lambda: closed.append("close callback"))

    app = counted(make_app(shape, during=register))
    middleware = DeferMiddleware(app, **options)

    if error is None:
        drive(middleware, stop_after=stop_after)
    else:
        with pytest.raises(error):
            drive(middleware, stop_after=stop_after)

    assert app.body.close_calls == 1
    assert closed == (["close callback"] if with_close_callback else [])


def test_closing_iterable_shape_is_closed_once(make_app, wrap, drive):
    counter = Counter()
    app = make_app("closing", counter=counter, during=lambda environ: after_this_request(_read_body))

    sent = drive(wrap(app))

    assert sent.body == b"HELLO WORLD"
    assert counter.closes == 1


def test_close_callbacks_run_once_in_order_after_the_body_is_done(shape, make_app, drive):
    log = []

    def register(environ):
        call_on_close(lambda: log.append("close 1"))
        call_on_close(lambda: log.append("close 2"))
        call_on_close(lambda: log.append("close 3"))

    sent = drive(DeferMiddleware(make_app(shape, during=register)), log=log, close_times=0)

    assert log[-1] == ("server got", b"world")
    assert "close 1" not in log
    sent.iterable.close()
    sent.iterable.close()
    assert log[-3:] == ["close 1", "close 2", "close 3"]
    assert log.count("close 1") == 1


def test_close_callbacks_run_even_when_registered_from_an_after_this_request_callback(make_app, wrap, drive):
    log = []

    def register(environ):
        @after_this_request
        def schedule(response):
            call_on_close(lambda: log.append("closed"))

    drive(wrap(make_app("list", during=register)))

    assert log == ["closed"]


def test_raising_close_callback_is_logged_and_the_rest_still_run(make_app, drive, caplog):
    log = []

    def failing():
        raise Boom("close callback failed")

    def register(environ):
        call_on_close(lambda: log.append("before"))
        call_on_close(failing)
        call_on_close(lambda: log.append("after"))

    with caplog.at_level(logging.ERROR, logger="deferware"):
        drive(DeferMiddleware(make_app("list", during=register)))  # close() does not raise

    assert log == ["before", "after"]
    [record] = [record for record in caplog.records if record.name == "deferware"]
    assert record.levelno == logging.ERROR
    assert "failing" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is Boom


@pytest.mark.parametrize("when", EARLY_FAILURES)
def test_close_callbacks_run_before_an_app_exception_leaves_the_middleware(when, make_app, drive):
    log = []
    error = Boom("app failed")

    def register(environ):
        call_on_close(lambda: log.append("close 1"))
        call_on_close(lambda: log.append("close 2"))

    shape, fault = EARLY_FAILURES[when]
    app = DeferMiddleware(make_app(shape, fault=fault, error=error, during=register))

    with pytest.raises(Boom) as caught:
        drive(app)

    assert caught.value is error
    assert log == ["close 1", "close 2"]


def test_close_callbacks_run_when_a_callback_raises(make_app, drive):
    log = []

    def register(environ):
        call_on_close(lambda: log.append("closed"))
        after_this_request(_raise)

    with pytest.raises(Boom):
        drive(DeferMiddleware(make_app("list", during=register)))

    assert log == ["closed"]


def test_app_close_error_propagates_but_close_callbacks_still_run(drive):
    log = []

    class FailingClose:
        def __iter__(self):
            return iter([b"x"])

        def close(self):
            raise Boom("app close failed")

    def app(environ, start_response):
        call_on_close(lambda: log.append("closed"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return FailingClose()

    with pytest.raises(Boom, match="app close failed"):
        drive(DeferMiddleware(app))

    assert log == ["closed"]


@pytest.mark.parametrize("policy", ["raise", "log"])
@pytest.mark.parametrize(
    "case", ["replaced-then-later-raises", "app_iter-set-then-later-raises", "replaced-badly"]
)
def test_a_body_a_callback_put_in_is_closed_once_when_a_later_step_fails(case, policy, drive, caplog):
    # The response a failing step leaves behind may carry a body a callback put
    # there (a replacement Response, or response.app_iter = ...): it is closed too.
    app_body, replacement = Counted([b"app"]), Counted([b"replacement"])

    def replace(response):
        if case == "app_iter-set-then-later-raises":
            response.app_iter = replacement
            return None
        new = Response(app_iter=replacement, content_type="text/plain")
        if case == "replaced-badly":
            new.headerlist.append(("X-Bad", "a\r\nb"))
        return new

    def app(environ, start_response):
        after_this_request(replace)
        if case != "replaced-badly":
            after_this_request(_raise)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return app_body

    middleware = DeferMiddleware(app, on_callback_error=policy)
    if policy == "raise":
        with pytest.raises(Exception, match=r"callback failed|unsafe response header"):
            drive(middleware)
    else:
        with caplog.at_level(logging.ERROR, logger="deferware"):
            drive(middleware)

    assert (app_body.close_calls, replacement.close_calls) == (1, 1)


@pytest.mark.parametrize("policy", ["raise", "log"])
def test_a_body_set_on_a_replacement_is_closed_once_when_a_later_callback_fails(policy, drive, caplog):
    app_body, replacement, late = Counted([b"app"]), Counted([b"replacement"]), Counted([b"late"])

    def replace(response):
        return Response(app_iter=replacement, content_type="text/plain")

    def set_late(response):
        response.app_iter = late

    def app(environ, start_response):
        for callback in (replace, set_late, _raise):
            after_this_request(callback)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return app_body

    middleware = DeferMiddleware(app, on_callback_error=policy)
    with caplog.at_level(logging.ERROR, logger="deferware"):
        if policy == "raise":
            with pytest.raises(Boom):
                drive(middleware)
        else:
            assert drive(middleware).body == b"late"

    assert (app_body.close_calls, replacement.close_calls, late.close_calls) == (1, 1, 1)


def test_the_body_a_conditional_response_produced_is_closed_when_what_follows_fails(make_app, drive):
    produced = Counted([b"partial"])

    class Odd(Response):
        def conditional_response_app(self, environ, start_response):
            start_response(None, [])  # a status that cannot be sent
            return produced

    def conditional(response):
        odd = Odd(body=b"whole", content_type="text/plain")
        odd.conditional_response = True
        return odd

    with pytest.raises(TypeError):
        drive(DeferMiddleware(make_app("list", during=lambda environ: after_this_request(conditional))))

    assert produced.close_calls == 1


@pytest.mark.parametrize(
    ("range_", "status"),
    [("bytes=0-1", "206"), ("bytes=50-60", "416"), (None, "200")],
    ids=["partial", "not-satisfiable", "no-range"],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_conditional_replacements_body_is_closed_once(
    range_, status, method, make_app, drive, make_environ
):
    # WebOb's conditional answer closes the body itself on 416; deferware closes
    # what it left behind: once in all, on every answer.
    body = Counted([b"hello"])

    def conditional(response):
        replacement = Response(app_iter=body, content_type="text/plain", content_length=5)
        replacement.conditional_response = True
        return replacement

    app = make_app("list", during=lambda environ: after_this_request(conditional))
    headers = {"HTTP_RANGE": range_} if range_ else {}
    sent = drive(DeferMiddleware(app), make_environ(method=method, **headers))

    assert sent.status.startswith(status)
    assert body.close_calls == 1


class _Body:
    """A body that counts close() and can raise from it."""

    def __init__(self, raises: BaseException | None = None) -> None:
        self.closes = 0
        self.raises = raises

    def __iter__(self):
        yield b"data"

    def close(self) -> None:
        self.closes += 1
        if self.raises is not None:
            raise self.raises


def test_close_callbacks_run_after_a_callback_closed_the_body(drive):
    ran = []
    body = _Body()

    def app(environ, start_response):
        call_on_close(lambda: ran.append("closed"))
        after_this_request(lambda response: response.app_iter.close())  # an aborted stream
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    drive(DeferMiddleware(app))

    assert (body.closes, ran) == (1, ["closed"])


class _Timeout(BaseException):
    """Stands for gevent.Timeout: not an Exception."""


def test_close_callbacks_run_on_the_failure_path_when_a_close_raises_a_base_exception(drive):
    ran = []

    def app(environ, start_response):
        call_on_close(lambda: ran.append("closed"))
        after_this_request(_raise)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Body(raises=_Timeout())

    with pytest.raises(BaseException) as raised:
        drive(DeferMiddleware(app))

    assert isinstance(raised.value, (Boom, _Timeout))
    assert ran == ["closed"]


def test_a_close_callback_returning_a_generator_is_reported(drive, caplog):
    def flush():
        yield

    def app(environ, start_response):
        call_on_close(lambda: flush())  # a wrapped generator function: not seen at registration
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x"]

    with caplog.at_level(logging.ERROR, logger="deferware"):
        drive(DeferMiddleware(app))

    assert "returned a generator" in caplog.text
