"""deferware with a real Flask application, deployed as Flask documents WSGI
middleware: ``app.wsgi_app = DeferMiddleware(app.wsgi_app)``.

Flask's own ``after_this_request`` and ``after_request`` functions run inside
``app.wsgi_app`` (in ``full_dispatch_request``), so they run before deferware's
callbacks, which run on the response Flask hands to the server.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from wsgiref.validate import validator

import flask
import pytest
import webob
from support import MarkerFileWrapper, make_environ, start
from webtest import TestApp

from deferware import DeferMiddleware, after_this_request

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
flask_example = importlib.import_module("flask_example")


def make_app():
    app = flask.Flask(__name__)
    app.wsgi_app = DeferMiddleware(app.wsgi_app)
    return app


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
    response = TestApp(flask_example.app).get("/", headers=headers)
    assert response.text == greeting
    [cookie] = response.headers.getall("Set-Cookie")
    assert cookie.startswith(f"user_lang={language};")
    assert "Max-Age=31536000" in cookie


def test_example_keeps_known_language_without_setting_cookie():
    client = TestApp(flask_example.app)
    client.set_cookie("user_lang", "fr")
    response = client.get("/", headers={"Accept-Language": "de"})
    assert response.text == "Bonjour"
    assert "Set-Cookie" not in response.headers


def test_example_is_deployed_as_flask_documents_middleware():
    assert isinstance(flask_example.app.wsgi_app, DeferMiddleware)


# Flask's after_this_request and deferware's in one request ----------------


def test_flask_callbacks_run_before_deferware_callbacks():
    app = make_app()
    order = []

    @app.after_request
    def flask_after_request(response):
        order.append("flask after_request")
        return response

    @app.route("/")
    def index():
        # deferware's is registered first, and still runs last.
        @after_this_request
        def deferware_callback(response):
            order.append("deferware")
            response.headers["X-Order"] += ", deferware"

        @flask.after_this_request
        def flask_callback(response):
            order.append("flask after_this_request")
            response.headers["X-Order"] = "flask"
            return response

        return "both"

    response = TestApp(app).get("/")
    assert response.text == "both"
    assert response.headers["X-Order"] == "flask, deferware"
    assert order == ["flask after_this_request", "flask after_request", "deferware"]


# What a callback sees and can do -------------------------------------------


def test_callback_sees_flask_response_and_mutates_it():
    app = make_app()
    seen = {}

    @app.route("/")
    def index():
        @after_this_request
        def inspect(response):
            seen["type"] = type(response)
            seen["status"] = response.status
            seen["header"] = response.headers["X-View"]
            seen["cookies"] = response.headers.getall("Set-Cookie")
            seen["content_type"] = response.content_type
            seen["body"] = response.body
            response.status = "202 Accepted"
            response.headers["X-Callback"] = "yes"
            response.delete_cookie("old")
            response.body = response.body.upper()

        response = flask.make_response("created", 201)
        response.headers["X-View"] = "flask"
        response.set_cookie("session_hint", "abc")
        return response

    response = TestApp(app).get("/", status=202)
    assert seen == {
        "type": webob.Response,
        "status": "201 CREATED",
        "header": "flask",
        "cookies": ["session_hint=abc; Path=/"],
        "content_type": "text/html",
        "body": b"created",
    }
    assert response.text == "CREATED"
    assert response.headers["Content-Length"] == "7"
    assert response.headers["X-Callback"] == "yes"
    cookies = response.headers.getall("Set-Cookie")
    assert cookies[0] == "session_hint=abc; Path=/"
    assert cookies[1].startswith("old=; Max-Age=0;")


def test_callback_replaces_flask_response_and_flask_response_is_closed():
    app = make_app()
    events = []

    @app.route("/")
    def index():
        after_this_request(lambda response: webob.Response("replaced", status=418))
        response = flask.make_response("original")
        response.call_on_close(lambda: events.append("flask response closed"))
        return response

    response = TestApp(app).get("/", status=418)
    assert response.text == "replaced"
    assert events == ["flask response closed"]


# Flask's error pages -------------------------------------------------------


def make_app_with_hook(seen):
    app = make_app()

    @app.before_request
    def register():
        @after_this_request
        def stamp(response):
            seen.append((response.status, response.body))
            response.headers["X-Deferware"] = "seen"

    @app.route("/boom")
    def boom():
        raise RuntimeError("the view failed")

    return app


def test_flask_404_page_gets_callbacks():
    seen = []
    response = TestApp(make_app_with_hook(seen)).get("/missing", status=404)
    assert response.headers["X-Deferware"] == "seen"
    [(status, body)] = seen
    assert status == "404 NOT FOUND"
    assert b"<h1>Not Found</h1>" in body


def test_flask_500_page_gets_callbacks(caplog):
    seen = []
    app = make_app_with_hook(seen)
    assert not app.debug and not app.testing  # so Flask renders its 500 page
    response = TestApp(app).get("/boom", status=500)
    assert response.headers["X-Deferware"] == "seen"
    [(status, body)] = seen
    assert status == "500 INTERNAL SERVER ERROR"
    assert b"<h1>Internal Server Error</h1>" in body
    assert "the view failed" in caplog.text  # Flask logged it; deferware did not swallow it


# Streaming and files -------------------------------------------------------


@pytest.mark.parametrize("with_callback", [False, True], ids=["no-callback", "header-callback"])
def test_stream_with_context_stays_streamed(with_callback):
    app = make_app()
    produced = []

    @app.route("/stream")
    def stream():
        if with_callback:
            after_this_request(lambda response: response.headers.__setitem__("X-Streamed", "yes"))

        def generate():
            for word in ("one", "two", "three"):
                produced.append(word)
                yield f"{word}:{flask.request.path}|"

        return flask.Response(flask.stream_with_context(generate()))

    sent = start(validator(app), make_environ("/stream"))
    body = sent.iterable
    assert sent.status == "200 OK"
    assert dict(sent.headers).get("X-Streamed") == ("yes" if with_callback else None)
    assert produced == []
    chunks = iter(body)
    assert next(chunks) == b"one:/stream|"
    assert produced == ["one"]
    assert list(chunks) == [b"two:/stream|", b"three:/stream|"]
    assert produced == ["one", "two", "three"]
    body.close()


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"0123456789" * 1000)
    return path


def make_file_app(data_file, callback):
    app = make_app()

    @app.route("/file")
    def file():
        if callback is not None:
            after_this_request(callback)
        return flask.send_file(data_file, mimetype="application/octet-stream")

    return app


def set_header(response):
    response.headers["X-Header"] = "set"


@pytest.mark.parametrize("callback", [None, set_header], ids=["no-callback", "header-callback"])
def test_send_file_keeps_server_file_wrapper(data_file, callback):
    app = make_file_app(data_file, callback)
    sent = start(app, make_environ("/file", **{"wsgi.file_wrapper": MarkerFileWrapper}))
    body = sent.iterable
    assert isinstance(body, MarkerFileWrapper)
    headers = dict(sent.headers)
    assert headers["Content-Length"] == "10000"
    assert headers.get("X-Header") == ("set" if callback else None)
    assert b"".join(body) == data_file.read_bytes()
    body.close()
    assert body.closed


def test_send_file_body_read_by_callback_is_sent_and_wrapper_closed(data_file):
    MarkerFileWrapper.instances.clear()

    def read_body(response):
        response.headers["X-Size"] = str(len(response.body))

    app = make_file_app(data_file, read_body)
    sent = start(app, make_environ("/file", **{"wsgi.file_wrapper": MarkerFileWrapper}))
    body = sent.iterable
    assert not isinstance(body, MarkerFileWrapper)
    assert dict(sent.headers)["X-Size"] == "10000"
    assert b"".join(body) == data_file.read_bytes()
    body.close()
    [wrapper] = MarkerFileWrapper.instances
    assert wrapper.closed
