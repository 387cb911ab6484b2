"""HEAD requests and bodiless statuses pass through; a callback that changes the
body leaves a Content-Length that matches what is sent, and on HEAD sends none."""

from __future__ import annotations

from wsgiref.validate import validator

import pytest
from webtest import TestApp

from deferware import DeferMiddleware, after_this_request


def _header(response):
    response.headers["X-Seen"] = "yes"


def _read(response):
    response.headers["X-Body-Length"] = str(len(response.body))


CALLBACKS = [
    pytest.param(None, id="no-callback"),
    pytest.param(_header, id="header-callback"),
    pytest.param(_read, id="body-reading-callback"),
]


def _register(callback):
    def during(environ):
        if callback is not None:
            after_this_request(callback)

    return during


@pytest.mark.parametrize("callback", CALLBACKS)
@pytest.mark.parametrize(
    ("status", "headers"),
    [
        pytest.param("204 No Content", [], id="204"),
        pytest.param("304 Not Modified", [("ETag", '"abc"')], id="304"),
    ],
)
def test_bodiless_status_passes_through(status, headers, callback, shape, make_app, wrap, drive):
    sent = drive(wrap(make_app(shape, during=_register(callback), status=status, headers=headers, body=[])))

    assert sent.status == status
    assert [(name, value) for name, value in sent.headers if not name.startswith("X-")] == headers
    assert sent.body == b""


@pytest.mark.parametrize("callback", CALLBACKS)
def test_head_request_passes_through_from_outside(callback, make_app, wrap):
    # A well-behaved app answers HEAD with the GET headers and no body.
    headers = [("Content-Type", "text/plain"), ("Content-Length", "11")]
    app = TestApp(wrap(make_app("list", during=_register(callback), headers=headers, body=[])))

    result = app.head("/")

    assert result.status == "200 OK"
    assert result.headers["Content-Length"] == "11"
    assert result.body == b""


def _set_body(response):
    response.body = b"a longer replacement body"


def _set_text(response):
    response.text = "caf\u00e9 \u2603"


def _append(response):
    response.write(b" and more")


def _shorten(response):
    response.body = response.body[:3]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(_set_body, b"a longer replacement body", id="body-setter"),
        pytest.param(_set_text, "caf\u00e9 \u2603".encode(), id="text-setter"),
        pytest.param(_append, b"hello world and more", id="write"),
        pytest.param(_shorten, b"hel", id="read-and-shorten"),
    ],
)
@pytest.mark.parametrize("with_length", [True, False], ids=["app-sent-length", "no-length"])
def test_content_length_matches_a_changed_body(change, expected, with_length, shape, make_app, wrap, drive):
    headers = [("Content-Type", "text/plain; charset=UTF-8")]
    if with_length:
        headers.append(("Content-Length", "11"))

    sent = drive(wrap(make_app(shape, during=_register(change), headers=headers)))

    assert sent.body == expected
    assert sent.header("Content-Length") == [str(len(expected))]


def _replace(response):
    from webob import Response

    return Response(b"a whole new response", content_type="text/plain")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_set_body, id="body-setter"),
        pytest.param(_set_text, id="text-setter"),
        pytest.param(_append, id="write"),
        pytest.param(_shorten, id="read-and-shorten"),
        pytest.param(_replace, id="replacement"),
    ],
)
@pytest.mark.parametrize("with_length", [True, False], ids=["app-sent-length", "no-length"])
def test_head_gets_no_body_when_a_callback_changes_it(
    change, with_length, shape, make_app, counted, wrap, drive, make_environ
):
    # A well-behaved app answers HEAD with the GET headers and no body. A callback
    # changing that body must not put bytes on the wire (servers send what they
    # get), and the Content-Length WebOb then computes (from the empty HEAD body)
    # is not the GET length RFC 9110 requires: it goes out only as the app sent it.
    headers = [("Content-Type", "text/plain; charset=UTF-8")]
    if with_length:
        headers.append(("Content-Length", "11"))
    app = counted(make_app(shape, during=_register(change), headers=headers, body=[]))

    sent = drive(wrap(app), make_environ(method="HEAD"))

    assert sent.status == "200 OK"
    assert sent.body == b""
    assert sent.header("Content-Length") == []  # each change makes WebOb's length differ from the app's
    assert sent.header("Content-Type")  # the other headers go out
    assert app.body.close_calls == 1


def test_head_keeps_the_apps_length_when_a_callback_only_reads_the_body(make_app, wrap, drive, make_environ):
    headers = [("Content-Type", "text/plain"), ("Content-Length", "11")]

    sent = drive(wrap(make_app("eager_generator", during=_register(_read), headers=headers, body=[])),
                 make_environ(method="HEAD"))  # fmt: skip

    assert sent.body == b""
    assert sent.header("Content-Length") == ["11"]
    assert sent.header("X-Body-Length") == ["0"]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_set_body, id="body-setter"),
        pytest.param(_append, id="write"),
        pytest.param(_shorten, id="read-and-shorten"),
        pytest.param(_replace, id="replacement"),
    ],
)
@pytest.mark.parametrize("policy", ["raise", "log"])
def test_head_gets_no_body_when_a_callback_changes_the_apps_own_body(change, policy, shape, make_app, drive,
                                                                     make_environ):  # fmt: skip
    # As above, with the application's own body (not wrapped by a validator): a
    # plain list is given to the response as a copy, which WebOb's write()
    # appends to in place.
    headers = [("Content-Type", "text/plain; charset=UTF-8"), ("Content-Length", "11")]
    app = make_app(shape, during=_register(change), headers=headers, body=[])

    sent = drive(validator(DeferMiddleware(app, on_callback_error=policy)), make_environ(method="HEAD"))

    assert sent.body == b""
    assert sent.header("Content-Length") == []
