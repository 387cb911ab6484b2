"""PEP 3333 compliance on both sides of the middleware.

Every application shape, with nothing registered, with response callbacks (one
of which rewrites the body), with close callbacks and with all of them, runs
behind ``wsgiref.validate.validator`` and Werkzeug's ``LintMiddleware`` placed
both inside and outside ``DeferMiddleware``: the application must be used
correctly by the middleware, and the server must be used correctly by it. Any
warning fails (``filterwarnings = error``, and recorded here explicitly); a
validator assertion fails the test.
"""

from __future__ import annotations

import gc
import warnings
from typing import Any, Callable
from wsgiref.validate import validator

import pytest
from support import BODY, COUNTED_SHAPES, Counter, drive, make_app
from webob import Response
from werkzeug.middleware.lint import LintMiddleware

from deferware import DeferMiddleware, after_this_request, call_on_close

REGISTRATIONS = ("nothing", "headers", "body", "close", "all")
CHECKERS: dict[str, Callable[[Any], Any]] = {"wsgiref-validator": validator, "werkzeug-lint": LintMiddleware}


def registrar(registered: str, counter: Counter) -> Callable[[dict[str, Any]], None]:
    def headers(response: Response) -> None:
        response.headers["X-Deferred"] = "yes"
        response.set_cookie("lang", "de")

    def body(response: Response) -> None:
        response.body = response.body.upper()

    def during(environ: dict[str, Any]) -> None:
        if registered in ("headers", "all"):
            after_this_request(headers)
        if registered in ("body", "all"):
            after_this_request(body, environ=environ)
        if registered in ("close", "all"):
            call_on_close(counter.closer("context"))
            call_on_close(counter.closer("environ"), environ=environ)

    return during


@pytest.mark.parametrize("checker", CHECKERS)
@pytest.mark.parametrize("registered", REGISTRATIONS)
@pytest.mark.parametrize("shape", COUNTED_SHAPES)
def test_both_sides_of_the_middleware_comply(shape: str, registered: str, checker: str) -> None:
    check = CHECKERS[checker]
    counter = Counter()
    app = make_app(shape, counter=counter, during=registrar(registered, counter))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        served = drive(check(DeferMiddleware(check(app))))
        gc.collect()  # an unclosed checked iterator complains when collected
    assert [f"{warning.category.__name__}: {warning.message}" for warning in caught] == []
    expected = b"".join(BODY)
    assert served.body == (expected.upper() if registered in ("body", "all") else expected)
    assert served.start_response_calls == 1
    assert (counter.created, counter.closes) == (1, 1)
    assert counter.close_callbacks == (["context", "environ"] if registered in ("close", "all") else [])
    assert served.headers is not None
    if registered in ("headers", "all"):
        assert ("X-Deferred", "yes") in served.headers
