"""``DeferMiddleware``: runs the request's registered callbacks on its response.

The application gets a fresh :class:`~deferware.registry.Registry` (environ and context) and a
:class:`Capture`'s ``start_response``. Nothing registered: its status, header list and iterable
go to the server as they are. Otherwise a ``webob.Response`` goes through the callbacks
(:mod:`deferware.callbacks`) and its final status, headers and body go to the server directly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable, Literal

from .callbacks import run_callbacks
from .iterators import RequestBody, close_quietly, fail, left_behind, prime
from .options import from_keywords
from .registry import ENVIRON_KEY, Registry, current_registry
from .responses import Headers, build_response

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["Capture", "DeferMiddleware"]

logger = logging.getLogger("deferware")

_WHY_WRITTEN = (
    "the application called write() with no after_this_request callback registered, so its status, "
    "headers and data went straight to the server"
)

_set = current_registry.set
_reset = current_registry.reset

#: The values of ``on_callback_error``.
OnCallbackError = Literal["raise", "log"]


class Capture:
    """The ``start_response`` and ``write()`` the application is given.

    The only holder of the server's ``start_response`` and ``write``: neither the environ nor the
    context can reach it. ``write()`` data goes straight to the server if no ``after_this_request``
    callback is registered at the first call (the request is then handed over), else it is kept.
    """

    # No __init__: every request makes one; the class attributes are the initial
    # state, and DeferMiddleware sets the two references.
    registry: Registry
    server: StartResponse
    status: str | None = None
    headers: list[tuple[str, str]]  # set with the status
    #: What goes out before the rest of the iterable: ``write()`` data kept for the
    #: callbacks, or chunks pulled while priming a lazy start.
    head: list[bytes] | None = None
    wrote = False
    finishing = False  # while the callbacks run
    handed_over = False
    server_write: Any = None  # the server's write(), once handed over

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Any:
        if exc_info is not None:
            try:
                if self.handed_over:  # the server decides: replace, or re-raise if sent
                    self.server_write = self.server(status, headers, exc_info)
                    return self.write
                if self.wrote or self.finishing:
                    # PEP 3333: after write() (the headers count as sent), or while the
                    # callbacks run on the response, an error cannot replace them.
                    raise exc_info[1].with_traceback(exc_info[2])  # type: ignore[union-attr]
            finally:
                exc_info = None  # a traceback held here would make a reference cycle
        elif self.status is not None:
            raise AssertionError(
                "start_response() was called a second time without exc_info; PEP 3333 allows a second "
                "call only with exc_info, to replace an error response."
            )
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> Any:
        if self.handed_over:
            return self.server_write(data)
        if self.status is None:
            raise AssertionError("write() was called before start_response() (PEP 3333).")
        if self.finishing:
            raise RuntimeError(
                "write() was called while an after_this_request callback was reading the response body, "
                "so its data cannot be put in order. Yield the data from the application's iterable instead."
            )
        if not self.wrote:
            self.wrote = True
            if self.registry.stop_callbacks(_WHY_WRITTEN):  # nothing to wait for: stream it
                self.hand_over(self.status, self.headers)
                return self.server_write(data)
        if self.head is None:
            self.head = []
        self.head.append(data)
        return None

    def hand_over(self, status: str, headers: list[tuple[str, str]]) -> None:
        """Give the final status and headers to the server."""
        self.server_write = self.server(status, headers)
        self.handed_over = True


class DeferMiddleware:
    """WSGI middleware that applies ``after_this_request`` callbacks and runs ``call_on_close``
    callbacks for the application it wraps.

    :param app: any WSGI application (Django, Pyramid, Flask, Bottle, plain).
    :param on_callback_error: ``"raise"`` (default): an exception from an ``after_this_request``
        callback propagates, after every body was closed and the close callbacks ran. ``"log"``:
        it is logged on the ``"deferware"`` logger and the response goes on as it was before that
        callback (status, headers and body put back), unless the callback advanced a streaming
        body, which cannot be put back: that propagates.

    Example: ``application = DeferMiddleware(application)``.

    A request with nothing registered passes through untouched: the same status, header list and
    iterable (so ``wsgi.file_wrapper`` keeps working), with no WebOb object built. One nested in
    another (a sub-request, or the same application wrapped twice) gets its own registry; the
    enclosing one is put back in the environ after.
    """

    def __init__(self, app: WSGIApplication, *, on_callback_error: OnCallbackError = "raise") -> None:
        if isinstance(app, dict):  # not printed: it may be long, and hold secrets
            raise TypeError(
                "DeferMiddleware needs a WSGI application (a callable), got a dict. From an ini file, "
                "that dict is PasteDeploy's configuration: DeferMiddleware is the middleware, not a "
                "PasteDeploy factory. Write 'use = egg:deferware' in the [filter:...] section instead."
            )
        if not callable(app):
            raise TypeError(f"DeferMiddleware needs a WSGI application (a callable), got {app!r}.")
        self.app = app
        self.options = from_keywords(on_callback_error=on_callback_error)
        self._log_errors = self.options["on_callback_error"] == "log"

    def __repr__(self) -> str:
        return f"DeferMiddleware({self.app!r}, on_callback_error={self.options['on_callback_error']!r})"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        registry = Registry()
        capture = Capture()
        capture.registry = registry
        capture.server = start_response
        previous = environ.get(ENVIRON_KEY)  # registry.bind, inline: every request runs it
        environ[ENVIRON_KEY] = registry
        token = _set(registry)
        try:
            try:
                app_iter = self.app(environ, capture.start_response)
            except BaseException:
                fail(registry, ())
                raise
            body: Iterable[bytes] = app_iter  # or a RequestBody that owns it
            try:
                if capture.status is None or capture.wrote:  # a lazy start, or write() used
                    body = self._started(environ, capture, app_iter)
                    if capture.handed_over:  # write() streamed it
                        return _finishing(body, registry, environ)
                if not registry.callbacks and registry.stop_if_idle():  # (a callback stays until it runs)
                    capture.server_write = start_response(capture.status, capture.headers)  # type: ignore[arg-type]
                    capture.handed_over = True  # capture.hand_over, inline: the idle path
                    return body
                if not registry.callbacks and registry.stop_callbacks():  # only close callbacks
                    out = _finishing(body, registry, environ)
                    capture.hand_over(capture.status, capture.headers)  # type: ignore[arg-type]
                    return out
            except BaseException:
                fail(registry, (body,))
                raise
            return self._finish(environ, capture, app_iter, body)
        finally:
            _reset(token)
            if isinstance(previous, Registry) and previous.active:  # an enclosing request's: it goes back
                environ[ENVIRON_KEY] = previous

    def _started(
        self, environ: WSGIEnvironment, capture: Capture, app_iter: Iterable[bytes]
    ) -> Iterable[bytes]:
        """The body, after what came before the iterable: chunks pulled until a lazy application
        called ``start_response``, or data kept from ``write()`` (if none, *app_iter* itself)."""
        if capture.status is not None and not capture.head:
            return app_iter
        head = capture.head
        iterator = None
        if capture.status is None:
            head = capture.head = []  # write() called while priming appends here too
            iterator = prime(app_iter, lambda: capture.status is not None, head)
            if capture.status is None:
                raise RuntimeError(
                    f"The WSGI application {self.app!r} returned an iterable that ended without calling "
                    "start_response(). Every WSGI application must call it (PEP 3333)."
                )
        return RequestBody(app_iter, capture.registry, environ, head, iterator)

    def _finish(
        self, environ: WSGIEnvironment, capture: Capture, app_iter: Iterable[bytes], body: Iterable[bytes]
    ) -> Iterable[bytes]:
        """Run the callbacks; hand the final response to the server (:func:`_send`)."""
        registry = capture.registry
        if body is app_iter:
            # WebOb's response.write() appends to a list body in place: the app's may be a constant.
            copy = type(app_iter) in (list, tuple)
            body = list(app_iter) if copy else RequestBody(app_iter, registry, environ)
        app_headers = capture.headers
        status: str = capture.status  # type: ignore[assignment]
        response = build_response(status, list(app_headers), body)
        dropped: list[Any] = []  # bodies left behind, closed at the end
        capture.finishing = True
        try:
            _, status, headers, final = run_callbacks(
                registry, response, environ, dropped, self._log_errors, status, app_headers
            )
        except BaseException:
            fail(registry, [body, response.app_iter, *dropped])
            raise
        finally:
            capture.finishing = False
        return _send(capture, status, headers, final, body, dropped, environ)


def _send(
    capture: Capture,
    status: str,
    headers: Headers,
    final: Any,
    body: Any,
    dropped: list[Any],
    environ: WSGIEnvironment,
) -> Iterable[bytes]:
    """Hand *status* and *headers* to the server; return the body it gets: *final*, with a
    ``close()`` that also closes *body* and *dropped* (each once) and runs the close callbacks.
    With nothing else to close and no close callback, *final* goes as it is: the application's
    own iterable if untouched (so ``wsgi.file_wrapper`` keeps working), or a list."""
    registry = capture.registry
    others = _others(final, body, dropped)
    own = type(final) is RequestBody and final.owned_by(registry)
    if others or not registry.stop_close_callbacks():
        final = final if own else RequestBody(final, registry, environ)
        final.close_also(others)
        final.finish_request()
    elif own and final.untouched:
        final = final.iterable
    elif not own and type(final) not in (list, tuple):
        final = RequestBody(final, registry, environ)  # a callback's body: binds the request too
    try:
        capture.hand_over(status, headers)
    except BaseException:
        close_quietly(final)
        raise
    return final  # type: ignore[no-any-return]


def _others(final: Any, body: Any, dropped: list[Any]) -> list[Any]:
    """The bodies to close besides *final*: each once, and none a RequestBody among them closes."""
    if not dropped and final is body:
        return []
    return left_behind([body, *dropped], final)


def _finishing(body: Iterable[bytes], registry: Registry, environ: WSGIEnvironment) -> Iterable[bytes]:
    """A body handed over without callbacks: as it is, or hooked if a close callback is registered."""
    if registry.stop_close_callbacks():
        return body
    # Not an inner DeferMiddleware's body: that one finishes its own request, not this one.
    if isinstance(body, RequestBody) and body.owned_by(registry):
        out = body
    else:
        out = RequestBody(body, registry, environ)
    out.finish_request()
    return out
