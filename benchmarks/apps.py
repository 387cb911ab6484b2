"""The WSGI applications the benchmark measures, built on deferware's public API only:
the core rows, a hello in four frameworks four ways, a lazy stream, and the servers' app."""

from __future__ import annotations

import gc
import sys
from contextvars import ContextVar
from typing import Any, Callable, Iterable
from wsgiref.util import setup_testing_defaults

from deferware import DeferMiddleware, after_this_request, call_on_close

App = Callable[..., Iterable[bytes]]
STATUS, BODY, COOKIE = "200 OK", b"hello", ("user_lang", "en")
CHUNK = bytes(64 * 1024)  # one preallocated chunk, yielded again and again
FRAMEWORKS = ("django", "flask", "pyramid", "bottle")
WAYS = ("plain", "own", "idle", "deferred")
ENVIRON: dict[str, Any] = {"HTTP_HOST": "127.0.0.1:8080"}  # a GET / as a server builds it
setup_testing_defaults(ENVIRON)


def set_cookie(response: Any) -> None:
    """The deferware callback, as a user writes it: WebOb's ``set_cookie``."""
    response.set_cookie(*COOKIE)


def noop(*args: Any) -> None:
    pass


def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
    return [BODY]


def registering(*callbacks: Callable[[Any], None]) -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        for callback in callbacks:
            after_this_request(callback)
        return bare(environ, start_response)

    return app


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
    from webob import Response

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
        "defer_noop": (DeferMiddleware(registering(noop)), "one no-op after_this_request callback"),
        "defer_cookie": (DeferMiddleware(registering(set_cookie)), "one set_cookie callback"),
        "defer_five_noop": (DeferMiddleware(registering(*[noop] * 5)), "five no-op callbacks"),
        "webob_construct": (webob_app(False), "bare + webob.Response(...) construction"),
        "webob_set_cookie": (webob_app(True), "bare + webob.Response(...).set_cookie()"),
    }


def django_apps() -> dict[str, App]:
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import HttpResponse
    from django.urls import path

    global urlpatterns, own_middleware, deferred_middleware
    urlpatterns = [path("", lambda request: HttpResponse("hello"))]

    def own_middleware(get_response: Callable[..., Any]) -> Callable[..., Any]:
        def middleware(request: Any) -> Any:
            response = get_response(request)
            response.set_cookie(*COOKIE)
            return response

        return middleware

    def deferred_middleware(get_response: Callable[..., Any]) -> Callable[..., Any]:
        def middleware(request: Any) -> Any:
            after_this_request(set_cookie, environ=request.environ)
            return get_response(request)

        return middleware

    if not settings.configured:
        settings.configure(DEBUG=False, SECRET_KEY="bench", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__)
        django.setup()
    handlers = {}
    for way in ("plain", "own", "deferred"):
        settings.MIDDLEWARE = [] if way == "plain" else [f"{__name__}.{way}_middleware"]
        handlers[way] = WSGIHandler()  # it reads settings.MIDDLEWARE now
    return handlers


def flask_apps() -> dict[str, App]:
    import flask

    def flask_cookie(response: Any) -> Any:
        response.set_cookie(*COOKIE)
        return response

    def view(register: Callable[[], object]) -> Callable[[], str]:
        def index() -> str:
            register()
            return "hello"

        return index

    views = {
        "own": lambda: flask.after_this_request(flask_cookie),
        "deferred": lambda: after_this_request(set_cookie),
    }
    apps = {way: flask.Flask(f"bench_{way}") for way in ("plain", "own", "deferred")}
    for way, app in apps.items():
        app.add_url_rule("/", "index", view(views.get(way, noop)))
    return apps


def pyramid_tween(handler: Callable[[Any], Any], registry: Any) -> Callable[[Any], Any]:
    hook = registry.settings["bench.hook"]

    def tween(request: Any) -> Any:
        hook(request)
        return handler(request)

    return tween


def pyramid_apps() -> dict[str, App]:
    from pyramid.config import Configurator
    from pyramid.response import Response

    hooks = {
        "own": lambda request: request.add_response_callback(lambda _, response: set_cookie(response)),
        "deferred": lambda request: after_this_request(set_cookie, environ=request.environ),
    }
    apps = {}
    for way in ("plain", "own", "deferred"):
        with Configurator(settings={"bench.hook": hooks.get(way)}) as config:
            config.add_route("home", "/")
            config.add_view(lambda request: Response(BODY, content_type="text/plain"), route_name="home")
            if way in hooks:
                config.add_tween(f"{__name__}.pyramid_tween")
            apps[way] = config.make_wsgi_app()
    return apps


def bottle_apps() -> dict[str, App]:
    import bottle

    hooks = {
        "own": lambda: bottle.response.set_cookie(*COOKIE),
        "deferred": lambda: after_this_request(set_cookie, environ=bottle.request.environ),
    }
    apps = {way: bottle.Bottle() for way in ("plain", "own", "deferred")}
    for way, app in apps.items():
        app.route("/", callback=lambda: "hello")
        if way in hooks:
            app.add_hook("before_request", hooks[way])
    return apps


def framework_apps() -> dict[str, dict[str, App]]:
    """``{framework: {way: app}}``: the cookie is set by the ``own`` and ``deferred`` ways,
    ``idle`` and ``deferred`` are wrapped in ``DeferMiddleware``."""
    builders = {"django": django_apps, "flask": flask_apps, "pyramid": pyramid_apps, "bottle": bottle_apps}
    result = {}
    for name in FRAMEWORKS:
        apps = builders[name]()
        apps.update(idle=DeferMiddleware(apps["plain"]), deferred=DeferMiddleware(apps["deferred"]))
        result[name] = {way: apps[way] for way in WAYS}
    return result


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
        path, environ["PATH_INFO"] = environ["PATH_INFO"], "/"
        if path == "/gc":
            gc.collect()
        return routes.get(path, bare)(environ, start_response)

    return dispatch
