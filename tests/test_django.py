"""deferware with a real Django project, deployed as a project's ``wsgi.py`` does:
``application = DeferMiddleware(get_wsgi_application())``.

Settings are configured once per process, by ``examples/django_example.py`` (a
one-file project, guarded by ``settings.configured``); the tests here swap in
their own urlconf and middleware with ``override_settings`` while they build and
use their handler (Django loads ``MIDDLEWARE`` when the handler is created).
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
from pathlib import Path
from wsgiref.validate import validator

import django
import pytest
import webob
from django.core.signals import request_finished
from django.core.wsgi import get_wsgi_application
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path
from support import MarkerFileWrapper, make_environ, start
from webtest import TestApp

from deferware import DeferMiddleware, after_this_request

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
django_example = importlib.import_module("django_example")


# The project under test: views, a Django middleware, the urlconf --------------

EVENTS: list[object] = []
PRODUCED: list[str] = []
DATA_FILE: list[Path] = []


class RegisteringMiddleware:
    """A Django middleware that registers with ``environ=request.environ``."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        @after_this_request(environ=request.environ)
        def stamp(response):
            EVENTS.append(("middleware callback", response.status))
            response.headers["X-Middleware"] = "seen"

        return self.get_response(request)


def real_response(request):
    @after_this_request
    def inspect(response):
        EVENTS.append(
            {
                "type": type(response),
                "status": response.status,
                "header": response.headers["X-View"],
                "cookies": response.headers.getall("Set-Cookie"),
                "content_type": response.content_type,
                "body": response.body,
            }
        )
        response.status = "202 Accepted"
        response.headers["X-Callback"] = "yes"
        response.delete_cookie("old")
        response.body = response.body.upper()

    response = HttpResponse("created", status=201, content_type="text/plain")
    response["X-View"] = "django"
    response.set_cookie("session_hint", "abc")
    return response


def plain(request):
    return HttpResponse("plain")


def read(request):
    @after_this_request
    def reads_body(response):
        EVENTS.append("reading body")
        assert response.body == b"read me"
        EVENTS.append("body read")

    return HttpResponse("read me")


def replaced(request):
    after_this_request(lambda response: webob.Response("replaced", status=418))
    return HttpResponse("original")


async def async_view(request):
    await asyncio.sleep(0)
    EVENTS.append(("async view thread", threading.get_ident()))

    @after_this_request
    def from_async_view(response):
        response.headers["X-Async"] = "context"

    after_this_request(
        lambda response: response.headers.__setitem__("X-Async-Environ", "environ"), environ=request.environ
    )
    return HttpResponse("async")


def boom(request):
    raise RuntimeError("the view failed")


def stream(request):
    if "callback" in request.GET:
        after_this_request(lambda response: response.headers.__setitem__("X-Streamed", "yes"))

    def generate():
        for word in ("one", "two", "three"):
            PRODUCED.append(word)
            yield f"{word}|"

    return StreamingHttpResponse(generate(), content_type="text/plain")


def file(request):
    if "header" in request.GET:
        after_this_request(lambda response: response.headers.__setitem__("X-Header", "set"))
    if "read" in request.GET:
        after_this_request(lambda response: response.headers.__setitem__("X-Size", str(len(response.body))))
    return FileResponse(DATA_FILE[0].open("rb"), content_type="application/octet-stream")


urlpatterns = [
    path("real", real_response),
    path("plain", plain),
    path("read", read),
    path("replaced", replaced),
    path("async", async_view),
    path("boom", boom),
    path("stream", stream),
    path("file", file),
]


@pytest.fixture
def app():
    EVENTS.clear()
    PRODUCED.clear()
    with override_settings(
        ROOT_URLCONF=__name__, MIDDLEWARE=[f"{__name__}.RegisteringMiddleware"], DEBUG=False
    ):
        # As in a project's wsgi.py.
        application = DeferMiddleware(get_wsgi_application())
        yield application


@pytest.fixture
def finished():
    """Counts Django's request_finished signal (sent by HttpResponse.close())."""
    calls = []

    def receiver(**kwargs):
        calls.append(kwargs["sender"])

    request_finished.connect(receiver)
    yield calls
    request_finished.disconnect(receiver)


# The README example -------------------------------------------------------


@pytest.mark.parametrize(
    ("accept_language", "language", "greeting"),
    [
        pytest.param("de-DE,de;q=0.9", "de", "Hallo", id="german"),
        pytest.param("fr;q=0.5, de", "de", "Hallo", id="quality-wins"),
        pytest.param("fr", "fr", "Bonjour", id="french"),
        pytest.param(None, "en", "Hello", id="no-header"),
    ],
)
def test_example_guesses_language_and_sets_cookie(accept_language, language, greeting):
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = TestApp(django_example.application).get("/", headers=headers)
    assert response.text == greeting
    [cookie] = response.headers.getall("Set-Cookie")
    assert cookie.startswith(f"user_lang={language};")
    assert "Max-Age=31536000" in cookie


def test_example_keeps_known_language_without_setting_cookie():
    client = TestApp(django_example.application)
    client.set_cookie("user_lang", "fr")
    response = client.get("/", headers={"Accept-Language": "de"})
    assert response.text == "Bonjour"
    assert "Set-Cookie" not in response.headers


# What a callback sees and can do -------------------------------------------


# Django < 6 emits cookies with SimpleCookie.output(header="") (a leading space), Django 6
# with Morsel.OutputString() (none); deferware hands them on unchanged either way.
DJANGO_SESSION_COOKIE = (" " if django.VERSION < (6,) else "") + "session_hint=abc; Path=/"


def test_view_and_middleware_callbacks_see_django_response_and_mutate_it(app):
    response = TestApp(app).get("/real", status=202)
    # Registration order: the middleware registered before the view ran.
    [middleware, seen] = EVENTS
    assert middleware == ("middleware callback", "201 Created")
    assert seen == {
        "type": webob.Response,
        "status": "201 Created",
        "header": "django",
        "cookies": [DJANGO_SESSION_COOKIE],
        "content_type": "text/plain",
        "body": b"created",
    }
    assert response.text == "CREATED"
    assert response.headers["X-Callback"] == "yes"
    assert response.headers["X-Middleware"] == "seen"
    cookies = response.headers.getall("Set-Cookie")
    assert cookies[0] == DJANGO_SESSION_COOKIE  # as Django sent it
    assert cookies[1].startswith("old=; Max-Age=0;")


def test_callback_replaces_django_response_and_django_response_is_closed(app, finished):
    response = TestApp(app).get("/replaced", status=418)
    assert response.text == "replaced"
    # Registration order: the middleware's callback ran on the original response.
    assert "X-Middleware" not in response.headers
    assert len(finished) == 1  # the original HttpResponse.close() ran


def test_request_finished_is_sent_when_the_server_closes_not_before(app, finished):
    sent = start(app, make_environ("/plain"))
    body = sent.iterable
    assert sent.status == "200 OK"
    assert dict(sent.headers)["X-Middleware"] == "seen"
    assert finished == []
    assert b"".join(body) == b"plain"
    body.close()
    assert len(finished) == 1


def test_callback_reading_the_body_closes_the_django_response_there_once(app):
    # WebOb's body getter closes the iterable it read: Django's response.close()
    # (and so request_finished) runs inside the callback, not when the server closes.
    def receiver(**kwargs):
        EVENTS.append("request_finished")

    request_finished.connect(receiver)
    try:
        sent = start(app, make_environ("/read"))
        body = sent.iterable
        assert sent.status == "200 OK"
        assert EVENTS == [("middleware callback", "200 OK"), "reading body", "request_finished", "body read"]
        assert b"".join(body) == b"read me"
        body.close()
    finally:
        request_finished.disconnect(receiver)
    assert EVENTS.count("request_finished") == 1


def test_async_view_under_wsgi_registers_through_the_context(app):
    response = TestApp(app).get("/async")
    assert response.text == "async"
    assert response.headers["X-Async"] == "context"
    assert response.headers["X-Async-Environ"] == "environ"
    assert response.headers["X-Middleware"] == "seen"
    # async_to_sync ran the view in another thread: only the copied context
    # (not a thread-local) can have carried the request there.
    [(_, thread_id)] = [event for event in EVENTS if event[0] == "async view thread"]
    assert thread_id != threading.get_ident()


# Django's error pages ------------------------------------------------------


def test_django_404_page_gets_callbacks(app):
    response = TestApp(app).get("/missing", status=404)
    assert response.headers["X-Middleware"] == "seen"
    assert EVENTS == [("middleware callback", "404 Not Found")]
    assert "<h1>Not Found</h1>" in response.text


def test_django_500_page_gets_callbacks(app, caplog):
    response = TestApp(app).get("/boom", status=500)
    assert response.headers["X-Middleware"] == "seen"
    assert EVENTS == [("middleware callback", "500 Internal Server Error")]
    assert "<h1>Server Error (500)</h1>" in response.text
    assert "the view failed" in caplog.text  # Django logged it (django.request)


# Streaming and files -------------------------------------------------------


@pytest.mark.parametrize("query", ["", "callback"], ids=["middleware-callback", "view-callback-too"])
def test_streaming_response_stays_streamed(app, query):
    sent = start(validator(app), make_environ("/stream", QUERY_STRING=query))
    body = sent.iterable
    assert sent.status == "200 OK"
    headers = dict(sent.headers)
    assert headers["X-Middleware"] == "seen"
    assert headers.get("X-Streamed") == ("yes" if query else None)
    assert "Content-Length" not in headers
    assert PRODUCED == []
    chunks = iter(body)
    assert next(chunks) == b"one|"
    assert PRODUCED == ["one"]
    assert list(chunks) == [b"two|", b"three|"]
    assert PRODUCED == ["one", "two", "three"]
    body.close()


@pytest.fixture
def data_file(tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"0123456789" * 1000)
    DATA_FILE[:] = [data]
    return data


@pytest.fixture
def no_middleware():
    """A handler without RegisteringMiddleware: nothing registers unless the view does."""
    EVENTS.clear()
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[], DEBUG=False):
        yield DeferMiddleware(get_wsgi_application())


@pytest.mark.parametrize("query", ["", "header"], ids=["no-callback", "header-callback"])
def test_file_response_keeps_server_file_wrapper(no_middleware, data_file, finished, query):
    environ = make_environ("/file", QUERY_STRING=query, **{"wsgi.file_wrapper": MarkerFileWrapper})
    sent = start(no_middleware, environ)
    body = sent.iterable
    assert isinstance(body, MarkerFileWrapper)
    headers = dict(sent.headers)
    assert headers["Content-Length"] == "10000"
    assert headers.get("X-Header") == ("set" if query else None)
    assert b"".join(body) == data_file.read_bytes()
    body.close()
    assert len(finished) == 1  # Django hooks the wrapper's close to the response's


def test_file_response_with_middleware_callback_keeps_server_file_wrapper(app, data_file):
    sent = start(app, make_environ("/file", **{"wsgi.file_wrapper": MarkerFileWrapper}))
    body = sent.iterable
    assert isinstance(body, MarkerFileWrapper)
    assert dict(sent.headers)["X-Middleware"] == "seen"
    assert b"".join(body) == data_file.read_bytes()
    body.close()


def test_file_response_body_read_by_callback_is_sent_and_closed(no_middleware, data_file, finished):
    MarkerFileWrapper.instances.clear()
    environ = make_environ("/file", QUERY_STRING="read", **{"wsgi.file_wrapper": MarkerFileWrapper})
    sent = start(no_middleware, environ)
    body = sent.iterable
    assert not isinstance(body, MarkerFileWrapper)
    assert dict(sent.headers)["X-Size"] == "10000"
    assert b"".join(body) == data_file.read_bytes()
    body.close()
    [wrapper] = MarkerFileWrapper.instances
    assert wrapper.closed
    assert len(finished) == 1
