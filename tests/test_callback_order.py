"""after_this_request callbacks run in registration order, each on the response
the previous one left; a returned webob.Response replaces it."""

from __future__ import annotations

import logging

import pytest
from webob import Response
from webtest import TestApp

from deferware import after_this_request


def test_callbacks_run_in_registration_order_on_every_app_shape(shape, make_app, wrap, drive):
    seen = []

    def register(environ):
        for number in range(1, 4):

            @after_this_request
            def callback(response, number=number):
                seen.append(number)
                response.headers.add("X-Order", str(number))

    sent = drive(wrap(make_app(shape, during=register)))

    assert seen == [1, 2, 3]
    assert sent.header("X-Order") == ["1", "2", "3"]
    assert sent.body == b"hello world"


def test_each_callback_sees_the_response_the_previous_one_left(make_app, wrap):
    seen = []

    def register(environ):
        after_this_request(lambda response: response.headers.__setitem__("X-First", "1"))
        after_this_request(lambda response: seen.append((type(response), response.headers.get("X-First"))))

    TestApp(wrap(make_app("list", during=register))).get("/")

    assert seen == [(Response, "1")]


def test_callback_returning_none_keeps_the_mutated_response(make_app, wrap):
    def register(environ):
        @after_this_request
        def mutate(response):
            response.status = "201 Created"
            response.set_cookie("lang", "de")

    result = TestApp(wrap(make_app("list", during=register))).get("/", status=201)

    assert result.headers["Set-Cookie"].startswith("lang=de")
    assert result.body == b"hello world"


def test_callback_returning_a_response_replaces_it_for_later_callbacks_and_the_server(
    shape, make_app, wrap, drive
):
    replacement = Response(b"replaced", status=202, content_type="text/plain")
    seen = []

    def register(environ):
        after_this_request(lambda response: replacement)
        after_this_request(lambda response: seen.append(response))

    sent = drive(wrap(make_app(shape, during=register)))

    assert seen == [replacement]
    assert seen[0] is replacement
    assert sent.status == "202 Accepted"
    assert sent.body == b"replaced"
    assert sent.header("Content-Length") == ["8"]


@pytest.mark.parametrize(
    ("returned", "type_name"),
    [
        pytest.param(42, "builtins.int", id="int"),
        pytest.param("text", "builtins.str", id="str"),
        pytest.param(b"bytes", "builtins.bytes", id="bytes"),
        pytest.param(False, "builtins.bool", id="false"),
        pytest.param({"status": 200}, "builtins.dict", id="dict"),
    ],
)
def test_callback_returning_anything_else_is_a_type_error_naming_callback_and_type(
    returned, type_name, make_app, wrap, drive
):
    def bad_callback(response):
        return returned

    def register(environ):
        after_this_request(bad_callback)

    with pytest.raises(TypeError, match=rf"bad_callback returned a {type_name};"):
        drive(wrap(make_app("list", during=register)))


def test_callback_registered_while_callbacks_run_is_appended_and_runs(shape, make_app, wrap, drive):
    seen = []

    def register(environ):
        @after_this_request
        def first(response):
            seen.append("first")

            @after_this_request
            def appended(response):
                seen.append("appended")
                response.headers["X-Appended"] = "yes"

        after_this_request(lambda response: seen.append("second"))

    sent = drive(wrap(make_app(shape, during=register)))

    assert seen == ["first", "second", "appended"]
    assert sent.header("X-Appended") == ["yes"]


def test_callback_sees_the_status_and_headers_the_app_gave(make_app, wrap):
    seen = []
    headers = [("Content-Type", "text/html; charset=UTF-8"), ("X-App", "a"), ("X-App", "b")]

    def register(environ):
        after_this_request(lambda response: seen.append((response.status, list(response.headerlist))))

    TestApp(wrap(make_app("list", during=register, status="203 Whatever", headers=headers))).get("/")

    assert seen == [("203 Whatever", headers)]


def _webob_forbidden():
    import webob.exc

    return webob.exc.HTTPForbidden()


def _webob_found():
    import webob.exc

    return webob.exc.HTTPFound(location="/login")


def _pyramid_forbidden():
    httpexceptions = pytest.importorskip("pyramid.httpexceptions")
    return httpexceptions.HTTPForbidden()


def _pyramid_found():
    httpexceptions = pytest.importorskip("pyramid.httpexceptions")
    return httpexceptions.HTTPFound(location="/login")


@pytest.mark.parametrize(
    "make_replacement", [_webob_forbidden, _webob_found, _pyramid_forbidden, _pyramid_found]
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("policy", ["raise", "log"])
def test_an_http_exception_replacement_goes_out_as_it_sends_itself(
    make_replacement, method, policy, make_app, wrap, drive, make_environ
):
    # webob.exc and Pyramid HTTP exceptions build their error page (and absolute
    # Location) in __call__: the replacement sends what it sends served alone.
    def register(environ):
        after_this_request(lambda response: make_replacement())
        after_this_request(lambda response: response.headers.add("X-Later", "1"))

    environ = make_environ(method=method, HTTP_ACCEPT="text/html")
    alone = drive(wrap(make_replacement()), dict(environ))

    sent = drive(wrap(make_app("eager_generator", during=register), on_callback_error=policy), environ)

    assert sent.status == alone.status
    assert sent.body == alone.body
    assert (sent.body != b"") is (method == "GET")
    assert sent.header("X-Later") == ["1"]
    assert sent.header("Location") == alone.header("Location")
    assert sent.header("Content-Type") == alone.header("Content-Type")
    if method == "GET":
        assert sent.header("Content-Length") == [str(len(sent.body))]


@pytest.mark.parametrize("make_replacement", [_webob_forbidden, _pyramid_found])
def test_an_http_exception_replacement_goes_out_when_a_later_callback_is_rolled_back(
    make_replacement, make_app, wrap, drive, make_environ, caplog
):
    def fail(response):
        response.headers["X-Failed"] = "1"
        raise LookupError("the later callback failed")

    def register(environ):
        after_this_request(lambda response: make_replacement())
        after_this_request(fail)

    environ = make_environ(HTTP_ACCEPT="text/html")
    alone = drive(wrap(make_replacement()), dict(environ))

    with caplog.at_level(logging.ERROR, logger="deferware"):
        sent = drive(wrap(make_app("eager_generator", during=register), on_callback_error="log"), environ)

    assert "the later callback failed" in caplog.text
    assert (sent.status, sent.body) == (alone.status, alone.body)
    assert sent.header("X-Failed") == []
    assert sent.header("Location") == alone.header("Location")
