"""Django integration: deferware's callbacks inside Django itself.

Add one line at the top of ``MIDDLEWARE`` in settings.py::

    MIDDLEWARE = [
        "deferware.django.DeferwareMiddleware",
        ...
    ]

Code that calls ``after_this_request`` or ``call_on_close`` then works the same
under every way Django is run: WSGI servers, ASGI servers (uvicorn, daphne),
``django.test.Client`` and pytest-django's ``client``, none of which goes
through a WSGI middleware around ``wsgi.py``. Callbacks get a
``webob.Response`` view of Django's response; their changes to status,
headers, cookies and body are copied back to it (a streaming response stays
streaming). Close callbacks run when the server closes the response, before
Django's ``request_finished`` signal, so that a database connection they open is
closed by Django's usual clean-up.

The core package never imports this module.
"""

from __future__ import annotations

import logging
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any, Callable, Iterable

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings

from .callbacks import run_callbacks
from .iterators import RequestBody, close_all, fail, left_behind, run_close_callbacks
from .options import from_keywords
from .registry import Registry, bind, unbind
from .responses import build_response

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

__all__ = ["DeferwareMiddleware"]

logger = logging.getLogger("deferware")


def _options() -> bool:
    """Whether callback errors are logged (``DEFERWARE_ON_CALLBACK_ERROR = "log"``)."""
    value = getattr(settings, "DEFERWARE_ON_CALLBACK_ERROR", "raise")
    return from_keywords(on_callback_error=value)["on_callback_error"] == "log"


def DeferwareMiddleware(get_response: Callable[..., Any]) -> Callable[..., Any]:
    """Django middleware that runs deferware's callbacks for each request.

    Put it first in ``MIDDLEWARE``, so that callbacks see the response every
    other middleware produced (error pages included). Register with the
    context form, or with ``environ=request.META``. Setting
    ``DEFERWARE_ON_CALLBACK_ERROR = "log"`` is ``on_callback_error="log"``.
    """
    log_errors = _options()

    if iscoroutinefunction(get_response):

        async def middleware_async(request: HttpRequest) -> HttpResponseBase:
            registry = Registry()
            bound = bind(registry, request.META)
            try:
                response = await get_response(request)
            except BaseException:
                fail(registry, ())
                raise
            finally:
                unbind(request.META, bound, keep=True)
            return await sync_to_async(_finish)(registry, request, response, log_errors)

        return middleware_async

    def middleware(request: HttpRequest) -> HttpResponseBase:
        registry = Registry()
        bound = bind(registry, request.META)
        try:
            response = get_response(request)
        except BaseException:
            fail(registry, ())  # the callbacks never run; the close callbacks do
            raise
        finally:
            unbind(request.META, bound, keep=True)
        return _finish(registry, request, response, log_errors)

    return middleware


# Django's sync_and_async_middleware, spelled out (the decorator is untyped).
DeferwareMiddleware.sync_capable = True  # type: ignore[attr-defined]
DeferwareMiddleware.async_capable = True  # type: ignore[attr-defined]


def _finish(registry: Registry, request: HttpRequest, response: Any, log_errors: bool) -> Any:
    """Apply the callbacks to *response* and hook its ``close()``."""
    environ = request.META
    bound = bind(registry, environ)
    try:
        if not registry.stop_callbacks():
            response = _apply(registry, environ, response, log_errors)
        # A streaming body's later chunks run as part of the request (they may
        # register close callbacks); a file keeps the server's file_wrapper.
        if response.streaming and not response.is_async and getattr(response, "file_to_stream", None) is None:
            response.streaming_content = RequestBody(response.streaming_content, registry, environ)
    except BaseException:  # Django answers with its 500 page instead: this one is closed
        try:
            fail(registry, ())
        finally:
            response.close()
        raise
    finally:
        unbind(environ, bound, keep=True)
    _hook_close(response, registry, environ)
    return response


def _hook_close(response: Any, registry: Registry, environ: dict[str, Any]) -> None:
    # Django's close() sends request_finished, whose handler closes database
    # connections: the close callbacks run first, so that theirs are closed too.
    django_close = response.close

    def close() -> None:
        bound = bind(registry, environ)
        try:
            run_close_callbacks(registry)
        finally:
            unbind(environ, bound, keep=True)
            django_close()

    response.close = close


class _AsyncBody:
    """Stands for an async streaming body, which a WSGI-style callback cannot read."""

    def __iter__(self) -> Any:
        raise RuntimeError(
            "An after_this_request callback tried to read the body of an async streaming "
            "response, which can only be consumed asynchronously. Change its headers only."
        )


def _view(response: Any) -> tuple[str, list[str], list[tuple[str, str]], Iterable[bytes]]:
    """Django's *response* as WSGI sees it: status, its cookies, header list and body."""
    status = f"{response.status_code} {response.reason_phrase}"
    cookies = [morsel.OutputString() for morsel in response.cookies.values()]
    headers = [*response.items(), *(("Set-Cookie", value) for value in cookies)]
    if response.streaming:
        body: Iterable[bytes] = _AsyncBody() if response.is_async else response.streaming_content
    else:
        body = [response.content]
    return status, cookies, headers, body


def _apply(registry: Registry, environ: dict[str, Any], response: Any, log_errors: bool) -> Any:
    """Run the callbacks on a ``webob.Response`` view of Django's *response*."""
    status, cookies, headers, body = _view(response)
    dropped: list[Any] = []
    seen = build_response(status, list(headers), body)
    try:
        _, new_status, new_headers, new_body = run_callbacks(
            registry, seen, environ, dropped, log_errors, status, headers
        )
    except BaseException:
        _close_others([*dropped, seen.app_iter], body)
        raise
    if type(new_body) is RequestBody and new_body.iterable is body and new_body.untouched:
        new_body = body  # only counted (on_callback_error="log"): not a change
    _close_others(dropped, body, new_body)
    if new_status != status:
        response.status_code = int(new_status[:3])
        response.reason_phrase = new_status[4:]
    if new_headers != headers:
        _copy_headers(response, new_headers, cookies)
    if new_body is not body:
        if response.streaming:
            response.streaming_content = new_body
        else:
            response.content = b"".join(new_body)
    return response


def _close_others(bodies: list[Any], *kept: Any) -> None:
    """Close *bodies* but *kept*: Django's own body, which its response closes, and the body
    that goes out (see :func:`~deferware.iterators.left_behind`)."""
    close_all([item.close for item in left_behind(bodies, *kept)])


def _copy_headers(response: Any, headers: list[tuple[str, str]], cookies: list[str]) -> None:
    """Make *response*'s headers and cookies the callbacks' *headers*."""
    combined: dict[str, list[str]] = {}
    set_cookies = []
    for name, value in headers:
        if name.lower() == "set-cookie":
            set_cookies.append(value)
        else:
            combined.setdefault(name, []).append(value)
    for name in list(response.headers):
        if name not in combined:
            del response.headers[name]
    for name, values in combined.items():
        response.headers[name] = ", ".join(values)  # RFC 9110: one line per field
    for name, morsel in list(response.cookies.items()):
        if morsel.OutputString() not in set_cookies:
            del response.cookies[name]
    kept = {name for name, morsel in response.cookies.items()}
    for value in set_cookies:
        if value not in cookies:
            cookie = SimpleCookie(value)
            for name in kept.intersection(cookie):
                logger.warning(
                    "Django keeps one cookie per name: the Set-Cookie %r an after_this_request "
                    "callback left replaces another cookie named %r. Give the two different names.",
                    value,
                    name,
                )
            kept.update(cookie)
            response.cookies.load(cookie)
