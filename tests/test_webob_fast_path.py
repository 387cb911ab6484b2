"""deferware.responses.build_response (which sets WebOb's instance state
directly) behaves like webob.Response(status=..., headerlist=..., app_iter=...)
on everything WebOb makes public."""

from __future__ import annotations

import pytest
from webob import Response

from deferware import DeferMiddleware, after_this_request
from deferware.responses import build_response

CASES = [
    pytest.param("200 OK", [("Content-Type", "text/plain; charset=UTF-8")], id="200-text"),
    pytest.param("200 OK", [], id="200-no-headers"),
    pytest.param(
        "201 Created", [("Content-Type", "application/json"), ("Location", "/items/1")], id="201-json"
    ),
    pytest.param("204 No Content", [], id="204"),
    pytest.param("302 Found", [("Location", "../relative"), ("Content-Length", "0")], id="302-relative"),
    pytest.param("304 Not Modified", [("ETag", '"v1"')], id="304"),
    pytest.param(
        "404 Not Found",
        [("Content-Type", "text/html; charset=latin-1"), ("Content-Length", "5")],
        id="404-latin-1",
    ),
    pytest.param("418 I'm a teapot", [("Content-Type", "text/plain")], id="418-no-charset"),
    pytest.param("299 Custom Reason Phrase", [("X-A", "1"), ("X-A", "2")], id="custom-reason-duplicates"),
    pytest.param(
        "500 Internal Server Error",
        [("Content-Type", "text/plain; charset=UTF-8"), ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2")],
        id="500-cookies",
    ),
]


def _outcome(read):
    try:
        return ("value", read())
    except Exception as error:  # noqa: BLE001 - the exception type is the outcome compared
        return ("error", type(error))


def _public_view(make, status, headers):
    """Everything observable through WebOb's public API, for a fresh response."""
    body = [b"hel", b"lo"]

    def fresh():
        return make(status, list(headers), list(body))

    def with_cookie():
        response = fresh()
        response.set_cookie("lang", "de", path="/", max_age=60)
        return list(response.headerlist)

    def set_status_code():
        response = fresh()
        response.status_code = 201
        return (response.status, list(response.headerlist))

    response = fresh()
    return {
        "status": response.status,
        "status_code": response.status_code,
        "headerlist": list(response.headerlist),
        "headers": list(response.headers.items()),
        "content_type": response.content_type,
        "charset": response.charset,
        "content_length": response.content_length,
        "location": response.location,
        "app_iter": list(fresh().app_iter),
        "conditional_response": response.conditional_response,
        "body": _outcome(lambda: fresh().body),
        "text": _outcome(lambda: fresh().text),
        "set_cookie": _outcome(with_cookie),
        "status_code_setter": _outcome(set_status_code),
    }


def _public(status, headerlist, app_iter):
    return Response(status=status, headerlist=headerlist, app_iter=app_iter)


@pytest.mark.parametrize(("status", "headers"), CASES)
def test_fast_construction_matches_the_public_constructor(status, headers):
    assert _public_view(build_response, status, headers) == _public_view(_public, status, headers)


@pytest.mark.parametrize(("status", "headers"), CASES)
def test_fast_construction_shares_the_header_list_and_iterable(status, headers):
    headerlist = list(headers)
    app_iter = [b"body"]

    response = build_response(status, headerlist, app_iter)
    public = _public(status, list(headers), app_iter)

    assert response.headerlist is headerlist
    assert response.app_iter is app_iter
    assert public.app_iter is app_iter
    assert type(response) is Response


@pytest.mark.parametrize(("status", "headers"), CASES)
def test_the_response_a_callback_gets_is_the_one_webobs_constructor_makes(status, headers):
    """The same instance state as webob.Response(status=, headerlist=, app_iter=)."""
    seen = []

    def app(environ, start_response):
        after_this_request(seen.append)
        start_response(status, list(headers))
        return [b"hel", b"lo"]

    DeferMiddleware(app)({"REQUEST_METHOD": "GET"}, lambda status, headers, exc_info=None: None)

    [response] = seen
    public = Response(status=status, headerlist=list(headers), app_iter=[b"hel", b"lo"])
    assert vars(response) == vars(public)
    assert list(vars(response)) == list(vars(public))
