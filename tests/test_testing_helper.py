"""deferware.testing.deferred: run code that registers callbacks without a server."""

from __future__ import annotations

import logging

import pytest
from webob import Response

from deferware import ENVIRON_KEY, NoActiveRequest, ResponseAlreadyStarted, after_this_request, call_on_close
from deferware.testing import Deferred, deferred


def test_collects_callbacks_from_the_context_and_the_environ():
    environ = {}
    first, second = (lambda r: None), (lambda r: None)

    with deferred(environ) as collected:
        after_this_request(first)
        after_this_request(second, environ=environ)
        call_on_close(print)

    assert isinstance(collected, Deferred)
    assert environ[ENVIRON_KEY] is collected.registry
    assert collected.callbacks == [first, second]
    assert collected.close_callbacks == [print]


def test_apply_runs_callbacks_in_order_with_replacement():
    replacement = Response(b"replaced")
    seen = []
    with deferred() as collected:
        after_this_request(lambda response: response.headers.add("X-Order", "1"))
        after_this_request(lambda response: seen.append(response.headers.getall("X-Order")))
        after_this_request(lambda response: replacement)
        after_this_request(lambda response: response.headers.add("X-Order", "after-replacement"))

    final = collected.apply(Response(b"original"))

    assert seen == [["1"]]
    assert final is replacement
    assert final.body == b"replaced"
    assert final.headers.getall("X-Order") == ["after-replacement"]


def test_apply_defaults_to_an_empty_200():
    with deferred() as collected:
        after_this_request(lambda response: response.set_cookie("lang", "de"))

    final = collected.apply()

    assert final.status == "200 OK"
    assert final.headers["Set-Cookie"].startswith("lang=de")


def test_apply_has_the_middleware_type_error_for_bad_returns():
    def bad(response):
        return 42

    with deferred() as collected:
        after_this_request(bad)

    with pytest.raises(TypeError, match=r"bad returned a builtins\.int"):
        collected.apply()


def test_callbacks_run_once():
    with deferred() as collected:
        after_this_request(lambda response: None)
    collected.apply()

    with pytest.raises(RuntimeError, match=r"apply\(\) was already called"):
        collected.apply()
    with pytest.raises(ResponseAlreadyStarted):
        after_this_request(lambda response: None, environ=collected.environ)


def test_apply_after_close_says_so():
    with deferred() as collected:
        after_this_request(lambda response: None)
    collected.close()

    with pytest.raises(RuntimeError, match=r"close\(\) was already called: call apply\(\) before close\(\)"):
        collected.apply()


def test_close_runs_close_callbacks_once_logging_errors(caplog):
    log = []

    def failing():
        raise ValueError("close callback failed")

    with deferred() as collected:
        call_on_close(lambda: log.append("first"))
        call_on_close(failing)
        call_on_close(lambda: log.append("last"))

    with caplog.at_level(logging.ERROR, logger="deferware"):
        collected.close()
        collected.close()

    assert log == ["first", "last"]
    assert [record.levelno for record in caplog.records if record.name == "deferware"] == [logging.ERROR]


def test_no_request_is_active_after_the_block():
    with deferred():
        pass

    with pytest.raises(NoActiveRequest):
        after_this_request(lambda response: None)


def test_registration_after_a_failed_apply_is_refused():
    # apply() ran the callbacks (one raised): a later one could never run.
    environ = {}

    def fails(response):
        return 1 / 0

    with deferred(environ) as d:
        after_this_request(fails)
    with pytest.raises(ZeroDivisionError):
        d.apply()

    with pytest.raises(ResponseAlreadyStarted):
        after_this_request(lambda response: None, environ=environ)
    assert d.callbacks == []  # it ran (and raised): nothing is pending


def test_a_registration_after_a_successful_apply_says_the_response_went_out():
    with deferred() as d:
        after_this_request(lambda response: None)
    d.apply(Response("ok"))
    with pytest.raises(ResponseAlreadyStarted, match="already handed to the server"):
        after_this_request(lambda response: None, environ=d.environ)


class _Body:
    def __init__(self):
        self.closes = 0

    def __iter__(self):
        yield b"body"

    def close(self):
        self.closes += 1


def _not_modified(response):
    response.status = 304


def _conditional(response):
    response.etag = "abc"
    response.conditional_response = True


@pytest.mark.parametrize("callback", [_not_modified, _conditional])
def test_apply_closes_a_body_left_on_a_304_as_the_middleware_does(callback):
    body = _Body()
    with deferred({"HTTP_IF_NONE_MATCH": '"abc"'}) as d:
        after_this_request(callback)
    out = d.apply(Response(app_iter=body, content_type="text/plain"))
    assert (out.status_code, list(out.app_iter), body.closes) == (304, [], 1)


def test_apply_under_log_keeps_a_replacements_streaming_body():
    # A later callback counts the replacement's generator body (to see whether a
    # failure advanced it); the body that goes out must not be closed by apply().
    def generated():
        yield b"hello "
        yield b"world"

    with deferred({}) as d:
        after_this_request(lambda response: Response(app_iter=generated(), content_type="text/plain"))
        after_this_request(lambda response: None)
    response = d.apply(Response("original"), on_callback_error="log")
    assert b"".join(response.app_iter) == b"hello world"
