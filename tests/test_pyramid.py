"""deferware with a real Pyramid application: a Configurator app wrapped in
``DeferMiddleware``, and the same app loaded from an ini file whose
``[pipeline:main]`` puts ``egg:deferware`` in front of it (as ``pserve`` does).

Callback order in one request: Pyramid's own ``request.add_response_callback``
callbacks run first (inside the router, before the response leaves it), then
deferware's, in registration order (tween, NewRequest subscriber, view).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from wsgiref.validate import validator

import pytest
import webob
from paste.deploy import loadapp
from pyramid.config import Configurator
from pyramid.events import NewRequest
from pyramid.httpexceptions import HTTPInternalServerError
from pyramid.response import FileResponse, Response
from support import MarkerFileWrapper, make_environ, start
from webtest import TestApp

from deferware import DeferMiddleware, NoActiveRequest, after_this_request

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
pyramid_example = importlib.import_module("pyramid_example")


# The application under test ------------------------------------------------

EVENTS: list[object] = []
PRODUCED: list[str] = []
DATA_FILE: list[Path] = []


def registering_tween_factory(handler, registry):
    def tween(request):
        if "quiet" not in request.GET:

            @after_this_request(environ=request.environ)
            def from_tween(response):
                EVENTS.append(("tween", response.status))
                response.headers["X-Tween"] = "seen"

        return handler(request)

    return tween


def on_new_request(event):
    if "quiet" not in event.request.GET:

        @after_this_request
        def from_subscriber(response):
            EVENTS.append(("subscriber", response.status))
            response.headers["X-Subscriber"] = "seen"


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

    response = Response("created", status=201, content_type="text/plain")
    response.headers["X-View"] = "pyramid"
    response.set_cookie("session_hint", "abc")
    return response


def order(request):
    # deferware's registered first, and still runs after Pyramid's.
    @after_this_request
    def deferware_callback(response):
        EVENTS.append("deferware")
        response.headers["X-Order"] += ", deferware"

    def pyramid_callback(request, response):
        EVENTS.append("pyramid")
        response.headers["X-Order"] = "pyramid"

    request.add_response_callback(pyramid_callback)
    request.add_finished_callback(lambda request: EVENTS.append("pyramid finished"))
    return Response("both")


def replaced(request):
    after_this_request(lambda response: webob.Response("replaced", status=418))
    response = Response("original")
    response.app_iter = ClosingBody([b"original"])
    return response


class ClosingBody(list):
    def close(self):
        EVENTS.append("original body closed")


def boom(request):
    raise RuntimeError("the view failed")


def unhandled(request):
    raise LookupError("no exception view for this one")


def server_error(exc, request):
    return HTTPInternalServerError()


def stream(request):
    def generate():
        for word in ("one", "two", "three"):
            PRODUCED.append(word)
            yield f"{word}|".encode()

    return Response(app_iter=generate(), content_type="text/plain")


def file(request):
    if "header" in request.GET:
        after_this_request(lambda response: response.headers.__setitem__("X-Header", "set"))
    if "read" in request.GET:
        after_this_request(lambda response: response.headers.__setitem__("X-Size", str(len(response.body))))
    return FileResponse(str(DATA_FILE[0]), request=request, content_type="application/octet-stream")


def main(global_config, **settings):
    """The application factory (``use = call:test_pyramid:main`` in pyramid_app.ini)."""
    with Configurator(settings=settings) as config:
        config.add_tween(f"{__name__}.registering_tween_factory")
        config.add_subscriber(on_new_request, NewRequest)
        for name, view in [
            ("real", real_response),
            ("order", order),
            ("replaced", replaced),
            ("boom", boom),
            ("unhandled", unhandled),
            ("stream", stream),
            ("file", file),
        ]:
            config.add_route(name, f"/{name}")
            config.add_view(view, route_name=name)
        config.add_exception_view(server_error, context=RuntimeError)
        return config.make_wsgi_app()


@pytest.fixture(params=["configurator", "ini-pipeline"])
def app(request):
    EVENTS.clear()
    PRODUCED.clear()
    if request.param == "configurator":
        return DeferMiddleware(main({}))
    application = loadapp(f"config:{HERE / 'pyramid_app.ini'}")
    assert isinstance(application, DeferMiddleware)
    return application


# The README example -------------------------------------------------------


@pytest.fixture
def example_app():
    application = loadapp(f"config:{EXAMPLES / 'pyramid_example.ini'}")
    assert isinstance(application, DeferMiddleware)
    return application


@pytest.mark.parametrize(
    ("accept_language", "language", "greeting"),
    [
        pytest.param("de-DE,de;q=0.9", "de", "Hallo", id="german"),
        pytest.param("fr;q=0.5, de", "de", "Hallo", id="quality-wins"),
        pytest.param("fr", "fr", "Bonjour", id="french"),
        pytest.param(None, "en", "Hello", id="no-header"),
    ],
)
def test_example_guesses_language_and_sets_cookie(example_app, accept_language, language, greeting):
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = TestApp(example_app).get("/", headers=headers)
    assert response.text == greeting
    [cookie] = response.headers.getall("Set-Cookie")
    assert cookie.startswith(f"user_lang={language};")
    assert "Max-Age=31536000" in cookie


def test_example_keeps_known_language_without_setting_cookie(example_app):
    client = TestApp(example_app)
    client.set_cookie("user_lang", "fr")
    response = client.get("/", headers={"Accept-Language": "de"})
    assert response.text == "Bonjour"
    assert "Set-Cookie" not in response.headers


def test_example_factory_alone_has_no_deferware():
    with pytest.raises(NoActiveRequest, match="DeferMiddleware"):
        TestApp(pyramid_example.main({})).get("/", headers={"Accept-Language": "de"})


# Order, and what a callback sees and can do --------------------------------


def test_pyramid_response_callbacks_run_before_deferware_callbacks(app):
    response = TestApp(app).get("/order")
    assert response.text == "both"
    assert response.headers["X-Order"] == "pyramid, deferware"
    # Pyramid's finished callbacks, too, run inside the router: before deferware's.
    assert EVENTS == [
        "pyramid",
        "pyramid finished",
        ("tween", "200 OK"),
        ("subscriber", "200 OK"),
        "deferware",
    ]


def test_callbacks_see_pyramid_response_and_mutate_it(app):
    response = TestApp(app).get("/real", status=202)
    [tween, subscriber, seen] = EVENTS
    assert tween == ("tween", "201 Created")
    assert subscriber == ("subscriber", "201 Created")
    assert seen == {
        "type": webob.Response,
        "status": "201 Created",
        "header": "pyramid",
        "cookies": ["session_hint=abc; Path=/"],
        "content_type": "text/plain",
        "body": b"created",
    }
    assert response.text == "CREATED"
    assert response.headers["X-Callback"] == "yes"
    assert response.headers["X-Tween"] == response.headers["X-Subscriber"] == "seen"
    cookies = response.headers.getall("Set-Cookie")
    assert cookies[0] == "session_hint=abc; Path=/"
    assert cookies[1].startswith("old=; Max-Age=0;")


def test_callback_replaces_pyramid_response_and_original_body_is_closed(app):
    response = TestApp(app).get("/replaced", status=418)
    assert response.text == "replaced"
    # Registration order: tween and subscriber ran on the original response.
    assert "X-Tween" not in response.headers
    assert EVENTS[-1] == "original body closed"


# Error pages ---------------------------------------------------------------


def test_pyramid_404_page_gets_callbacks(app):
    response = TestApp(app).get("/missing", status=404)
    assert EVENTS == [("tween", "404 Not Found"), ("subscriber", "404 Not Found")]
    assert response.headers["X-Tween"] == response.headers["X-Subscriber"] == "seen"
    assert "The resource could not be found." in response.text


def test_exception_view_500_page_gets_callbacks(app):
    # Pyramid has no built-in 500 page: applications add an exception view.
    response = TestApp(app).get("/boom", status=500)
    assert EVENTS == [("tween", "500 Internal Server Error"), ("subscriber", "500 Internal Server Error")]
    assert response.headers["X-Tween"] == "seen"
    assert "Internal Server Error" in response.text


def test_exception_without_exception_view_propagates_and_callbacks_do_not_run(app):
    with pytest.raises(LookupError, match="no exception view"):
        TestApp(app).get("/unhandled")
    assert EVENTS == []


# Streaming and files -------------------------------------------------------


@pytest.mark.parametrize("query", ["", "quiet"], ids=["callbacks", "no-callback"])
def test_app_iter_generator_stays_streamed(app, query):
    sent = start(validator(app), make_environ("/stream", QUERY_STRING=query))
    body = sent.iterable
    assert sent.status == "200 OK"
    headers = dict(sent.headers)
    assert headers.get("X-Subscriber") == (None if query else "seen")
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


@pytest.mark.parametrize(
    ("query", "header"),
    [
        pytest.param("quiet", None, id="no-callback"),
        pytest.param("quiet&header", "set", id="view-header-callback"),
        pytest.param("", None, id="tween-and-subscriber-callbacks"),
    ],
)
def test_file_response_keeps_server_file_wrapper(app, data_file, query, header):
    environ = make_environ("/file", QUERY_STRING=query, **{"wsgi.file_wrapper": MarkerFileWrapper})
    sent = start(app, environ)
    body = sent.iterable
    assert isinstance(body, MarkerFileWrapper)
    headers = dict(sent.headers)
    assert headers["Content-Length"] == "10000"
    assert headers.get("X-Header") == header
    assert b"".join(body) == data_file.read_bytes()
    body.close()
    assert body.closed


def test_file_response_body_read_by_callback_is_sent_and_closed(app, data_file):
    MarkerFileWrapper.instances.clear()
    environ = make_environ("/file", QUERY_STRING="quiet&read", **{"wsgi.file_wrapper": MarkerFileWrapper})
    sent = start(app, environ)
    body = sent.iterable
    assert not isinstance(body, MarkerFileWrapper)
    assert dict(sent.headers)["X-Size"] == "10000"
    assert b"".join(body) == data_file.read_bytes()
    body.close()
    [wrapper] = MarkerFileWrapper.instances
    assert wrapper.closed
