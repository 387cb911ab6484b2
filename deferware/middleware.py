"""``DeferMiddleware``: runs the request's registered callbacks on its response.

One request's path through :meth:`DeferMiddleware.__call__`:

1. A fresh :class:`~deferware.registry.Registry` goes in the environ and the
   context; the application is called with a :class:`Capture`'s
   ``start_response``, which records the status and headers (and buffers
   ``write()`` data only if a callback will need it).
2. A lazy application (``start_response`` from inside its generator) is pulled
   up to its first chunk.
3. Nothing registered: the recorded status, the application's own header list
   and its own iterable go to the server. No WebOb object is built.
4. Otherwise a ``webob.Response`` is built over the body, the callbacks run
   (:mod:`deferware.callbacks`), and the final status, header list and body go
   to the server directly (:func:`~deferware.responses.outgoing`), with a
   :class:`~deferware.iterators.RequestBody` whose ``close()`` closes every
   body once and runs the close callbacks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable, Literal

from .callbacks import run_callbacks
from .iterators import RequestBody, prime, run_close_callbacks, unique_bodies
from .options import from_keywords
from .registry import ENVIRON_KEY, Registry, current_registry
from .responses import HeaderCheck, build_response, outgoing, send_itself

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["Capture", "DeferMiddleware"]

logger = logging.getLogger("deferware")

_WHY_WRITTEN = (
    "the application called write() with no after_this_request callback registered, so its "
    "status, headers and data went straight to the server"
)

_set = current_registry.set
_reset = current_registry.reset

#: The values of ``on_callback_error``.
OnCallbackError = Literal["raise", "log"]


class Capture:
    """The ``start_response`` and ``write()`` the application is given.

    The only holder of the server's ``start_response`` and ``write``: neither
    the environ nor the context can reach it, so nothing of the server's is
    kept alive by them. ``write()`` data is passed straight to the server when
    no ``after_this_request`` callback is registered at the first call (the
    request is then handed over), and buffered for the callbacks otherwise.
    """

    # No __init__ and no __slots__: every request makes one, and the class
    # attributes are the initial state (as in Registry). DeferMiddleware sets
    # the two references.
    registry: Registry
    server: StartResponse
    status: str | None = None
    #: Set by start_response with the status (read only once status is set).
    headers: list[tuple[str, str]]
    #: What goes out before the rest of the iterable, in order: ``write()`` data
    #: kept for the callbacks, or chunks pulled while priming a lazy start.
    head: list[bytes] | None = None
    wrote = False
    #: True while the callbacks run on the response.
    finishing = False
    handed_over = False
    #: The server's write(), once the response was handed over.
    server_write: Any = None

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
                "start_response() was called a second time without exc_info; PEP 3333 allows "
                "a second call only with exc_info, to replace an error response."
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
                "write() was called while an after_this_request callback was reading the response "
                "body, so its data cannot be put in order. Yield the data from the application's "
                "iterable instead."
            )
        if not self.wrote:
            self.wrote = True
            if self.registry.stop_if_none(True, False, _WHY_WRITTEN):  # nothing to wait for: stream it
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
    """WSGI middleware that applies ``after_this_request`` callbacks and runs
    ``call_on_close`` callbacks for the application it wraps.

    :param app: any WSGI application (Django, Pyramid, Flask, Bottle, plain).
    :param on_callback_error: ``"raise"`` (default): an exception from an
        ``after_this_request`` callback propagates, after every body was closed
        and the close callbacks ran. ``"log"``: it is logged on the
        ``"deferware"`` logger and the response goes on as it was before that
        callback (status, headers and body put back), unless the callback
        advanced a streaming body, which cannot be put back: that propagates.

    Example::

        from deferware import DeferMiddleware
        application = DeferMiddleware(application)

    A request with nothing registered passes through untouched: the same status,
    header list and iterable (so ``wsgi.file_wrapper`` keeps working), with no
    WebOb object built. A ``DeferMiddleware`` nested in another one (a
    sub-request, or the same application wrapped twice) gets its own registry;
    the enclosing one is put back in the environ after.
    """

    def __init__(self, app: WSGIApplication, *, on_callback_error: OnCallbackError = "raise") -> None:
        if isinstance(app, dict):  # not printed: it may be long, and hold secrets
            raise TypeError(
                "DeferMiddleware needs a WSGI application (a callable), got a dict. From an ini "
                "file, that dict is PasteDeploy's configuration: DeferMiddleware is the "
                "middleware, not a PasteDeploy factory. Write 'use = egg:deferware' in the "
                "[filter:...] section instead."
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
        # registry.bind, inline: every request runs it
        previous = environ.get(ENVIRON_KEY)
        environ[ENVIRON_KEY] = registry
        token = _set(registry)
        try:
            try:
                app_iter = self.app(environ, capture.start_response)
            except BaseException:
                _fail(registry, ())
                raise
            body: Iterable[bytes] = app_iter  # or a RequestBody that owns it
            try:
                if capture.status is None or capture.head:
                    body = self._started(environ, registry, capture, app_iter)
                if capture.handed_over:  # write() streamed it
                    return _finishing(body, registry, environ)
                # (A callback once registered stays until it runs: no lock needed to see one.)
                if not registry.callbacks and registry.stop_if_idle():
                    capture.server_write = start_response(capture.status, capture.headers)  # type: ignore[arg-type]
                    capture.handed_over = True  # capture.hand_over, inline: every idle request runs it
                    return body
                if not registry.callbacks and registry.stop_if_none(True, False):  # only close ones
                    out = _finishing(body, registry, environ)
                    capture.hand_over(capture.status, capture.headers)  # type: ignore[arg-type]
                    return out
            except BaseException:
                _fail(registry, (body,))
                raise
            return self._finish(environ, registry, capture, app_iter, body)
        finally:
            _reset(token)
            # An enclosing request's registry goes back (see DeferMiddleware);
            # previous.active, inline: every request runs this.
            active = previous is not None and isinstance(previous, Registry)
            if active and (previous.taking or previous.taking_close):  # type: ignore[union-attr]
                environ[ENVIRON_KEY] = previous

    def _started(
        self, environ: WSGIEnvironment, registry: Registry, capture: Capture, app_iter: Iterable[bytes]
    ) -> RequestBody:
        """The application's body with what came before its iterable: chunks
        pulled until a lazy application called ``start_response``, and data
        buffered from ``write()``."""
        head = capture.head
        iterator = None
        if capture.status is None:
            head = capture.head = []  # write() called while priming appends here too
            iterator = prime(app_iter, lambda: capture.status is not None, head)
            if capture.status is None:
                raise RuntimeError(
                    f"The WSGI application {self.app!r} returned an iterable that ended without "
                    "calling start_response(). Every WSGI application must call it (PEP 3333)."
                )
        return RequestBody(app_iter, registry, environ, head, iterator)

    def _finish(
        self,
        environ: WSGIEnvironment,
        registry: Registry,
        capture: Capture,
        app_iter: Iterable[bytes],
        body: Iterable[bytes],
    ) -> Iterable[bytes]:
        """Run the callbacks and hand the final response to the server."""
        if body is app_iter:
            # WebOb's response.write() appends to a list body in place: the
            # application's list may be a constant it serves to every request.
            body = (
                list(app_iter)
                if type(app_iter) in (list, tuple)
                else RequestBody(app_iter, registry, environ)
            )
        app_headers = capture.headers
        check = HeaderCheck(capture.status, app_headers)  # type: ignore[arg-type]
        response = build_response(capture.status, list(app_headers), body)  # type: ignore[arg-type]
        dropped: list[Any] = []  # bodies left behind, closed at the end
        capture.finishing = True
        try:
            response = run_callbacks(registry, response, check, environ, dropped, self._log_errors)
            if response.conditional_response:
                dropped.append(response.app_iter)
                response = send_itself(response, environ)
                check.status, check.headers = response.status, response.headerlist
            final = response.app_iter
            status, headers, bodiless = outgoing(check.status, check.headers, environ, app_headers)
        except BaseException:
            _fail(registry, [body, response.app_iter, *dropped])
            raise
        finally:
            capture.finishing = False
        if bodiless:  # no body may go out: what is there is closed, not sent
            dropped.append(final)
            final = []
        out = _outgoing_body(final, body, dropped, registry, environ)
        try:
            capture.hand_over(status, headers)
        except BaseException:
            _close_quietly(out)
            raise
        return out


def _outgoing_body(
    final: Iterable[bytes], body: Any, dropped: list[Any], registry: Registry, environ: WSGIEnvironment
) -> Iterable[bytes]:
    """What the server gets: *final*, and a close() that finishes the request.

    When there is nothing else to close and no close callback, *final* goes as
    it is: the application's own iterable if no callback touched it (so
    ``wsgi.file_wrapper`` keeps working), or a list.
    """
    others: list[Any] = []
    if dropped or final is not body:  # each once, and none that a RequestBody among them closes
        bodies = unique_bodies([final, body, *dropped])
        others = [item for item in bodies if item is not final and hasattr(item, "close")]
    if not others and registry.stop_if_none(False, True):
        if type(final) is RequestBody and final.untouched:
            return final.iterable
        if type(final) in (list, tuple, RequestBody):
            return final
        return RequestBody(final, registry, environ)
    out = final if type(final) is RequestBody else RequestBody(final, registry, environ)
    out.close_also(others)
    out.finish_request()
    return out


def _finishing(body: Iterable[bytes], registry: Registry, environ: WSGIEnvironment) -> Iterable[bytes]:
    """The body of a response ``write()`` handed over: the server's, with a
    close hook if a close callback is registered."""
    if registry.stop_if_none(False, True):
        return body
    out = body if type(body) is RequestBody else RequestBody(body, registry, environ)
    out.finish_request()
    return out


def _close_quietly(iterable: object) -> None:
    try:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    except Exception:
        logger.exception("Closing %r raised while another error was propagating.", iterable)


def _fail(registry: Registry, iterables: Iterable[object]) -> None:
    """The request failed before its response reached the server.

    Its ``after_this_request`` callbacks are dropped, every body is closed once
    and the close callbacks run; their errors are logged, so that the original
    exception propagates unchanged.
    """
    registry.drop_callbacks()
    for item in unique_bodies(iterables):
        _close_quietly(item)
    run_close_callbacks(registry)
