"""deferware with real Bottle applications: ``DeferMiddleware(bottle.default_app())``
(routes made with the module-level ``bottle.route``) and an explicit ``Bottle()``.

``bottle.default_app()`` is process-wide state: each test pushes a fresh default
app and pops it afterwards. Bottle's own ``after_request`` hooks run inside the
Bottle app, so they run before deferware's callbacks.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from wsgiref.validate import validator

import bottle
import pytest
import webob
from support import MarkerFileWrapper, make_environ, start
from webtest import TestApp

from deferware import DeferMiddleware, after_this_request

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
bottle_example = importlib.import_module("bottle_example")


# The application under test ------------------------------------------------

EVENTS: list[object] = []
PRODUCED: list[str] = []


def install(route, hook, data_dir):
    """Add the test routes with *route* and *hook* (module-level or an app's)."""

    @hook("before_request")
    def register():
        if bottle.request.query.get("quiet") is None:

            @after_this_request(environ=bottle.request.environ)
            def from_hook(response):
                EVENTS.append(("hook", response.status))
                response.headers["X-Hook"] = "seen"

    @hook("after_request")
    def bottle_after_request():
        if bottle.request.path == "/order":
            EVENTS.append("bottle after_request")
            bottle.response.headers["X-Order"] = "bottle"

    @route("/real")
    def real_response():
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

        bottle.response.status = 201
        bottle.response.content_type = "text/plain"
        bottle.response.headers["X-View"] = "bottle"
        bottle.response.set_cookie("session_hint", "abc")
        return "created"

    @route("/order")
    def order():
        @after_this_request
        def deferware_callback(response):
            EVENTS.append("deferware")
            response.headers["X-Order"] += ", deferware"

        return "both"

    @route("/replaced")
    def replaced():
        after_this_request(lambda response: webob.Response("replaced", status=418))

        def original():
            try:
                yield "original"
            finally:
                EVENTS.append("original body closed")

        return original()

    @route("/boom")
    def boom():
        raise RuntimeError("the view failed")

    @route("/stream")
    def stream():
        if bottle.request.query.get("header") is not None:
            after_this_request(lambda response: response.headers.__setitem__("X-Streamed", "yes"))

        def generate():
            for word in ("one", "two", "three"):
                PRODUCED.append(word)
                yield f"{word}|"

        return generate()

    @route("/file")
    def file():
        if bottle.request.query.get("header") is not None:
            after_this_request(lambda response: response.headers.__setitem__("X-Header", "set"))
        if bottle.request.query.get("read") is not None:
            after_this_request(
                lambda response: response.headers.__setitem__("X-Size", str(len(response.body)))
            )
        return bottle.static_file("data.bin", root=str(data_dir), mimetype="application/octet-stream")


@pytest.fixture
def data_dir(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"0123456789" * 1000)
    return tmp_path


@pytest.fixture
def default_app():
    """A fresh ``bottle.default_app()`` for one test, popped afterwards."""
    fresh = bottle.default_app.push()
    try:
        yield fresh
    finally:
        assert bottle.default_app.pop() is fresh


@pytest.fixture(params=["default-app", "explicit-app"])
def app(request, default_app, data_dir):
    EVENTS.clear()
    PRODUCED.clear()
    if request.param == "default-app":
        install(bottle.route, bottle.hook, data_dir)
        return DeferMiddleware(bottle.default_app())
    explicit = bottle.Bottle()
    install(explicit.route, explicit.hook, data_dir)
    assert not default_app.routes  # the explicit app did not touch the default one
    return DeferMiddleware(explicit)


def test_default_app_is_isolated(default_app):
    assert bottle.default_app() is default_app
    assert default_app.routes == []
    install(bottle.route, bottle.hook, Path("."))
    assert len(default_app.routes) == 6


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
    response = TestApp(bottle_example.application).get("/", headers=headers)
    assert response.text == greeting
    [cookie] = response.headers.getall("Set-Cookie")
    assert cookie.startswith(f"user_lang={language};")
    assert "Max-Age=31536000" in cookie


def test_example_keeps_known_language_without_setting_cookie():
    client = TestApp(bottle_example.application)
    client.set_cookie("user_lang", "fr")
    response = client.get("/", headers={"Accept-Language": "de"})
    assert response.text == "Bonjour"
    assert "Set-Cookie" not in response.headers


def test_example_404_page_gets_the_cookie_too():
    response = TestApp(bottle_example.application).get(
        "/missing", headers={"Accept-Language": "fr"}, status=404
    )
    assert response.headers["Set-Cookie"].startswith("user_lang=fr;")


# Order, and what a callback sees and can do --------------------------------


def test_bottle_after_request_hooks_run_before_deferware_callbacks(app):
    response = TestApp(app).get("/order")
    assert response.text == "both"
    assert response.headers["X-Order"] == "bottle, deferware"
    assert EVENTS == ["bottle after_request", ("hook", "200 OK"), "deferware"]


def test_callbacks_see_bottle_response_and_mutate_it(app):
    response = TestApp(app).get("/real", status=202)
    [hook, seen] = EVENTS
    assert hook == ("hook", "201 Created")
    assert seen == {
        "type": webob.Response,
        "status": "201 Created",
        "header": "bottle",
        "cookies": ["session_hint=abc"],
        "content_type": "text/plain",
        "body": b"created",
    }
    assert response.text == "CREATED"
    assert response.headers["X-Callback"] == "yes"
    assert response.headers["X-Hook"] == "seen"
    cookies = response.headers.getall("Set-Cookie")
    assert cookies[0] == "session_hint=abc"
    assert cookies[1].startswith("old=; Max-Age=0;")


def test_callback_replaces_bottle_response_and_original_body_is_closed(app):
    response = TestApp(app).get("/replaced", status=418)
    assert response.text == "replaced"
    assert "X-Hook" not in response.headers  # the hook's callback ran on the original
    assert EVENTS[-1] == "original body closed"


# Error pages ---------------------------------------------------------------


def test_bottle_404_page_gets_callbacks(app):
    response = TestApp(app).get("/missing", status=404)
    assert EVENTS == [("hook", "404 Not Found")]
    assert response.headers["X-Hook"] == "seen"
    assert "<title>Error: 404 Not Found</title>" in response.text


def test_bottle_500_page_gets_callbacks(app):
    assert not bottle.DEBUG  # so Bottle renders its error page without the traceback
    response = TestApp(app).get("/boom", status=500, expect_errors=True)
    assert "RuntimeError: the view failed" in response.errors  # Bottle's log, in wsgi.errors
    assert EVENTS == [("hook", "500 Internal Server Error")]
    assert response.headers["X-Hook"] == "seen"
    assert "<title>Error: 500 Internal Server Error</title>" in response.text
    assert "the view failed" not in response.text


# Streaming and files -------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "streamed"),
    [
        pytest.param("quiet", None, id="no-callback"),
        pytest.param("", None, id="hook-callback"),
        pytest.param("header", "yes", id="hook-and-route-callbacks"),
    ],
)
def test_generator_stays_streamed(app, query, streamed):
    sent = start(validator(app), make_environ("/stream", QUERY_STRING=query))
    body = sent.iterable
    assert sent.status == "200 OK"
    headers = dict(sent.headers)
    assert headers.get("X-Streamed") == streamed
    assert "Content-Length" not in headers
    # Bottle itself pulls the first item to learn the body's type.
    assert PRODUCED == ["one"]
    chunks = iter(body)
    assert next(chunks) == b"one|"
    assert PRODUCED == ["one"]
    assert list(chunks) == [b"two|", b"three|"]
    assert PRODUCED == ["one", "two", "three"]
    body.close()


@pytest.mark.parametrize(
    ("query", "header"),
    [
        pytest.param("quiet", None, id="no-callback"),
        pytest.param("quiet&header", "set", id="route-header-callback"),
        pytest.param("", None, id="hook-callback"),
    ],
)
def test_static_file_keeps_server_file_wrapper(app, data_dir, query, header):
    environ = make_environ("/file", QUERY_STRING=query, **{"wsgi.file_wrapper": MarkerFileWrapper})
    sent = start(app, environ)
    body = sent.iterable
    assert isinstance(body, MarkerFileWrapper)
    headers = dict(sent.headers)
    assert headers["Content-Length"] == "10000"
    assert headers.get("X-Header") == header
    assert b"".join(body) == (data_dir / "data.bin").read_bytes()
    body.close()
    assert body.closed


def test_static_file_body_read_by_callback_is_sent_and_closed(app, data_dir):
    MarkerFileWrapper.instances.clear()
    environ = make_environ("/file", QUERY_STRING="quiet&read", **{"wsgi.file_wrapper": MarkerFileWrapper})
    sent = start(app, environ)
    body = sent.iterable
    assert not isinstance(body, MarkerFileWrapper)
    assert dict(sent.headers)["X-Size"] == "10000"
    assert b"".join(body) == (data_dir / "data.bin").read_bytes()
    body.close()
    [wrapper] = MarkerFileWrapper.instances
    assert wrapper.closed
