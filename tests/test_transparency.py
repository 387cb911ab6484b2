"""With nothing registered the middleware is transparent: the same status, the
same header list, the application's own iterable, and no WebOb object built."""

from __future__ import annotations

from wsgiref.util import FileWrapper

import pytest
import webob

import deferware.middleware
from deferware import DeferMiddleware, after_this_request, call_on_close

OPTIONS = [pytest.param({}, id="default"), pytest.param({"on_callback_error": "log"}, id="log")]


@pytest.fixture
def no_webob(monkeypatch):
    """Fail the test if a webob.Response is built."""

    def refuse(*args, **kwargs):
        raise AssertionError("a webob.Response was built")

    monkeypatch.setattr(deferware.middleware, "build_response", refuse)
    monkeypatch.setattr(webob.Response, "__init__", refuse)


def recording(app):
    """Wrap *app* to record what it passed to start_response and returned."""

    def wrapper(environ, start_response):
        def spy(status, headers, exc_info=None):
            wrapper.given = (status, headers)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        wrapper.returned = app(environ, spy)
        return wrapper.returned

    return wrapper


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("shape_name", ["list", "eager_generator", "closing"])
def test_app_iterable_status_and_header_list_are_handed_on_as_they_are(
    shape_name, options, make_app, drive, no_webob
):
    app = recording(
        make_app(shape_name, headers=[("Content-Type", "text/plain"), ("X-A", "1"), ("X-A", "2")])
    )

    sent = drive(DeferMiddleware(app, **options))

    assert sent.iterable is app.returned
    assert sent.status is app.given[0]
    assert sent.headers is app.given[1]
    assert sent.headers == [("Content-Type", "text/plain"), ("X-A", "1"), ("X-A", "2")]
    assert sent.chunks == [b"hello", b" ", b"world"]


@pytest.mark.parametrize("options", OPTIONS)
def test_every_shape_passes_through_unchanged_without_webob(options, shape, make_app, drive, no_webob):
    direct = drive(make_app(shape))

    sent = drive(DeferMiddleware(make_app(shape), **options))

    assert (sent.status, sent.headers, sent.chunks) == (direct.status, direct.headers, direct.chunks)
    assert sent.start_response_calls == 1


def test_only_close_callbacks_build_no_webob(make_app, drive, no_webob):
    closed = []

    sent = drive(
        DeferMiddleware(make_app("list", during=lambda environ: call_on_close(lambda: closed.append(1))))
    )

    assert sent.body == b"hello world"
    assert closed == [1]


def test_file_wrapper_instance_is_handed_on(make_app, drive, no_webob):
    headers = [("Content-Type", "application/octet-stream")]
    app = recording(make_app("file_wrapper", headers=headers, body=[b"file contents"]))

    sent = drive(DeferMiddleware(app))

    assert type(app.returned) is FileWrapper
    assert sent.iterable is app.returned
    assert sent.body == b"file contents"
    assert sent.headers == [("Content-Type", "application/octet-stream")]


def test_no_webob_fixture_notices_a_response_being_built(make_app, drive, no_webob):
    # Guards the guard: with a callback registered, a Response must be built.

    with pytest.raises(AssertionError, match=r"a webob\.Response was built"):
        drive(DeferMiddleware(make_app("list", during=lambda environ: after_this_request(lambda r: None))))


class BodyList(list):
    pass


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda response: response.write(b"!"), id="response.write"),
        pytest.param(lambda response: response.body_file.write(b"!"), id="body_file.write"),
    ],
)
@pytest.mark.parametrize("kind", [list, BodyList])
def test_a_callback_never_changes_the_applications_own_list_body(kind, change, drive):
    # WebOb appends to a list body in place; the application's list may be a
    # constant served to every request, so the response gets a copy.
    constant_body = kind([b"ok"])

    def app(environ, start_response):
        after_this_request(change)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return constant_body

    middleware = DeferMiddleware(app)
    for _ in range(2):
        sent = drive(middleware)
        assert sent.body == b"ok!"
        assert sent.header("Content-Length") == ["3"]
    assert constant_body == [b"ok"]
