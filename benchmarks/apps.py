"""The WSGI applications the benchmark measures, built on deferware's public API only:
the core rows, a hello in four frameworks four ways, a lazy stream, and the servers' app."""

from __future__ import annotations

import gc
import sys
from contextvars import ContextVar
from typing import Any, Callable, Iterable
from wsgiref.util import setup_testing_defaults

import bottle
import django
import flask
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpResponse
from django.urls import path
from pyramid.config import Configurator
from pyramid.response import Response as PyramidResponse
from webob import Response

from deferware import DeferMiddleware, after_this_request, call_on_close

App = Callable[..., Iterable[bytes]]
STATUS, BODY, COOKIE = "200 OK", b"hello", ("user_lang", "en")
CHUNK = bytes(64 * 1024)  # one preallocated chunk, yielded again and again
FRAMEWORKS, WAYS = ("django", "flask", "pyramid", "bottle"), ("plain", "own", "idle", "deferred")
ENVIRON: dict[str, Any] = {"HTTP_HOST": "127.0.0.1:8080"}  # a GET / as a server builds it
setup_testing_defaults(ENVIRON)


def set_cookie(response: Any) -> None:
    """The cookie as a deferware callback sets it (a callback that returns a response replaces it)."""
    response.set_cookie(*COOKIE)


def flask_cookie(response: Any) -> Any:
    response.set_cookie(*COOKIE)
    return response  # Flask's after_this_request wants the response back


def noop(*args: Any) -> None:
    pass


def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
    return [BODY]


def registering(*callbacks: Callable[[Any], object]) -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        for callback in callbacks:
            after_this_request(callback)
        return bare(environ, start_response)

    return DeferMiddleware(app)


_minimal: ContextVar[dict[str, Any]] = ContextVar("bench.minimal")


def minimal_defer(app: App) -> App:
    """The idle floor: what any deferring middleware does when nothing is registered
    (a registry in the environ, a context variable, ``start_response`` held back)."""

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        captured: list[Any] = []
        token = _minimal.set(environ.setdefault("bench.registry", {"callbacks": []}))
        try:
            body = app(environ, lambda status, headers, exc_info=None: captured.extend((status, headers)))
        finally:
            _minimal.reset(token)
        start_response(*captured)
        return body

    return middleware


def webob_app(cookie: bool) -> App:
    """``bare`` plus ``webob.Response(status=, headerlist=, app_iter=)``, then its ``set_cookie``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")]
        response = Response(status=STATUS, headerlist=headers, app_iter=[BODY])
        if cookie:
            response.set_cookie(*COOKIE)
        return bare(environ, start_response)

    return app


def core_apps() -> dict[str, tuple[App, str]]:
    """``{row: (app, what it is)}``; only ``defer_cookie`` sends the cookie."""
    return {
        "bare": (bare, "plain WSGI app: two headers, one-item list body"),
        "minimal_defer": (minimal_defer(bare), "minimal deferring middleware: the idle floor"),
        "defer_idle": (DeferMiddleware(bare), "DeferMiddleware, nothing registered"),
        "defer_noop": (registering(noop), "one no-op after_this_request callback"),
        "defer_cookie": (registering(set_cookie), "one set_cookie callback"),
        "defer_five_noop": (registering(*[noop] * 5), "five no-op callbacks"),
        "webob_construct": (webob_app(False), "bare + webob.Response(...) construction"),
        "webob_set_cookie": (webob_app(True), "bare + webob.Response(...).set_cookie()"),
    }


# The cookie's two ways per framework, registered at the same place: (own way, deferware's way).
HOOKS: dict[str, tuple[Callable[..., object], Callable[..., object]]] = {
    "django": (lambda request, response: set_cookie(response),  # a middleware, after the view
               lambda request, response: after_this_request(set_cookie, environ=request.environ)),
    "flask": (lambda: flask.after_this_request(flask_cookie),  # the view
              lambda: after_this_request(set_cookie)),
    "pyramid": (lambda request: request.add_response_callback(lambda _, response: set_cookie(response)),
                lambda request: after_this_request(set_cookie, environ=request.environ)),  # a tween
    "bottle": (lambda: bottle.response.set_cookie(*COOKIE),  # a before_request hook
               lambda: after_this_request(set_cookie, environ=bottle.request.environ)),
}  # fmt: skip


def django_middleware(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    hook = settings.BENCH_HOOK

    def middleware(request: Any) -> Any:
        response = get_response(request)
        hook(request, response)
        return response

    return middleware


def pyramid_tween(handler: Callable[[Any], Any], registry: Any) -> Callable[[Any], Any]:
    hook = registry.settings["bench.hook"]

    def tween(request: Any) -> Any:
        hook(request)
        return handler(request)

    return tween


def framework_app(name: str, hook: Callable[..., object] | None) -> App:
    """A hello in framework *name*, running *hook* where that framework's cookie tools go."""
    if name == "django":
        settings.MIDDLEWARE, settings.BENCH_HOOK = [f"{__name__}.django_middleware"] if hook else [], hook
        return WSGIHandler()  # it reads the settings now
    if name == "pyramid":
        with Configurator(settings={"bench.hook": hook}) as config:
            config.add_route("home", "/")
            config.add_view(
                lambda request: PyramidResponse(BODY, content_type="text/plain"), route_name="home"
            )
            if hook:
                config.add_tween(f"{__name__}.pyramid_tween")
            return config.make_wsgi_app()
    if name == "bottle":
        app = bottle.Bottle()
        app.route("/", callback=lambda: "hello")
        if hook:
            app.add_hook("before_request", hook)
        return app

    def index() -> str:
        if hook:
            hook()
        return "hello"

    app = flask.Flask(__name__)
    app.add_url_rule("/", "index", index)
    return app


def framework_apps() -> dict[str, dict[str, App]]:
    """``{framework: {way: app}}``: the cookie is set by the ``own`` and ``deferred`` ways,
    ``idle`` and ``deferred`` are wrapped in ``DeferMiddleware``."""
    if not settings.configured:
        settings.configure(DEBUG=False, SECRET_KEY="bench", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__)
        django.setup()
    result = {}
    for name, (own, deferred) in HOOKS.items():
        plain = framework_app(name, None)
        result[name] = {"plain": plain, "own": framework_app(name, own), "idle": DeferMiddleware(plain)}
        result[name]["deferred"] = DeferMiddleware(framework_app(name, deferred))
    return result


urlpatterns = [path("", lambda request: HttpResponse("hello"))]


def stream_app(chunks: int, register: str = "") -> App:
    """A lazy app (``start_response`` runs at the first chunk) yielding *chunks* chunks;
    *register* "header" adds a header-only callback, "close" a ``call_on_close``."""

    def add_header(response: Any) -> None:
        response.headers["X-Deferred"] = "yes"

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if register == "header":
            after_this_request(add_header)
        elif register == "close":
            call_on_close(noop)
        length = str(chunks * len(CHUNK))
        start_response(STATUS, [("Content-Type", "application/octet-stream"), ("Content-Length", length)])
        chunk = CHUNK
        for _ in range(chunks):
            yield chunk

    return DeferMiddleware(app) if register else app


def server_app() -> App:
    """What the servers run: ``/<framework>/<way>``, and ``/gc`` for a full garbage collection."""
    routes = {f"/{fw}/{way}": app for fw, ways in framework_apps().items() for way, app in ways.items()}
    sys.setswitchinterval(1.0)  # threads switch when one waits: instruction counts then ignore timing

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route, environ["PATH_INFO"] = environ["PATH_INFO"], "/"
        if route == "/gc":
            gc.collect()
        return routes.get(route, bare)(environ, start_response)

    return dispatch
