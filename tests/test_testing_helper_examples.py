"""``deferware.testing.deferred`` used the way users would, in their own unit tests.

The tests of ``examples/unit_testing.py`` (the README example) run here as they
are; the rest show the other things users do with the helper, and that it
applies callbacks with the middleware's semantics.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from webob import Response

import deferware.testing
from deferware import (
    InvalidHeader,
    NoActiveRequest,
    ResponseAlreadyStarted,
    after_this_request,
    call_on_close,
)
from deferware.testing import Deferred, deferred

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
unit_testing = importlib.import_module("unit_testing")

# The README example's own tests, collected and run here unchanged.
test_language_cookie_is_set = unit_testing.test_language_cookie_is_set
test_known_language_registers_nothing = unit_testing.test_known_language_registers_nothing


def test_example_tests_catch_a_broken_implementation(monkeypatch):
    # The example's tests can fail: break the code under test and they do.
    def forgets_cookie(environ):
        call_on_close(lambda: None)

    monkeypatch.setattr(unit_testing, "detect_user_language", forgets_cookie)
    with pytest.raises(KeyError, match="set-cookie"):
        unit_testing.test_language_cookie_is_set()


def test_module_docstring_example():
    # The example in deferware.testing's docstring, with the function it assumes.
    def detect_user_language(environ):
        language = environ["HTTP_ACCEPT_LANGUAGE"]
        after_this_request(lambda response: response.set_cookie("user_lang", language))

    environ = {"HTTP_ACCEPT_LANGUAGE": "de"}
    with deferred(environ) as d:
        detect_user_language(environ)
    response = d.apply(Response("hello"))
    assert "user_lang=de" in response.headers["Set-Cookie"]
    d.close()
    assert "with deferred(environ) as d:" in deferware.testing.__doc__


def test_environ_form_and_context_form_both_work():
    environ = {}
    with deferred(environ) as d:
        after_this_request(lambda response: response.headers.__setitem__("X-Context", "1"))
    # After the block the context is gone, but the environ still finds the request.
    after_this_request(lambda response: response.headers.__setitem__("X-Environ", "1"), environ=environ)
    response = d.apply()
    assert response.status == "200 OK"
    assert response.headers["X-Context"] == response.headers["X-Environ"] == "1"


def test_outside_the_block_the_context_form_raises():
    with deferred():
        pass
    with pytest.raises(NoActiveRequest, match="DeferMiddleware"):
        after_this_request(lambda response: None)


def test_callbacks_run_in_order_and_may_replace_the_response():
    with deferred() as d:
        after_this_request(lambda response: response.headers.__setitem__("X-First", "1"))
        after_this_request(lambda response: Response("replaced", status=418))
        after_this_request(lambda response: response.headers.__setitem__("X-Third", "3"))
    assert isinstance(d, Deferred)
    assert len(d.callbacks) == 3
    response = d.apply(Response("original"))
    assert response.status == "418 I'm a teapot"
    assert response.body == b"replaced"
    assert "X-First" not in response.headers
    assert response.headers["X-Third"] == "3"


def test_bad_return_value_and_unsafe_header_fail_as_in_the_middleware():
    with deferred() as d:
        after_this_request(lambda response: "not a response")
    with pytest.raises(TypeError, match="must return None"):
        d.apply()

    with deferred() as d:
        after_this_request(lambda response: response.headers.__setitem__("X-Bad", "a\r\nb"))
    with pytest.raises(InvalidHeader, match="X-Bad"):
        d.apply()


def test_callbacks_run_once_and_late_registration_is_refused():
    environ = {}
    with deferred(environ) as d:
        after_this_request(lambda response: None)
    d.apply()
    with pytest.raises(ResponseAlreadyStarted):
        after_this_request(lambda response: None, environ=environ)
    with pytest.raises(RuntimeError, match="already called"):
        d.apply()


def test_close_callbacks_run_in_order_and_errors_are_logged(caplog):
    events = []
    with deferred() as d:
        call_on_close(lambda: events.append("first"))
        call_on_close(lambda: 1 / 0)
        call_on_close(lambda: events.append("third"))
    assert len(d.close_callbacks) == 3
    d.apply()
    assert events == []
    d.close()
    assert events == ["first", "third"]
    assert "ZeroDivisionError" in caplog.text
