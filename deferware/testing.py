"""Test helpers for code that calls ``after_this_request`` or ``call_on_close``.

Use :func:`deferred` in your own unit tests to run such code without a server
or ``DeferMiddleware``: it activates a registry for the block (in the context,
and in the environ you pass), and the returned :class:`Deferred` then applies
the collected callbacks to a response you give it, with the middleware's own
callback loop, and runs the close callbacks::

    from webob import Response
    from deferware.testing import deferred

    def test_language_cookie_is_set():
        environ = {"HTTP_ACCEPT_LANGUAGE": "de"}
        with deferred(environ) as d:
            detect_user_language(environ)
        response = d.apply(Response("hello"))
        assert "user_lang=de" in response.headers["Set-Cookie"]
        d.close()
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from webob import Request, Response

from .callbacks import run_callbacks
from .iterators import close_all, left_behind, run_close_callbacks
from .options import from_keywords
from .registry import ENVIRON_KEY, Registry, bind, unbind

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["Deferred", "deferred"]


class Deferred:
    """The callbacks registered inside a :func:`deferred` block."""

    def __init__(self, environ: WSGIEnvironment) -> None:
        self.environ = environ
        self.registry = Registry()
        self._applied = False
        self._closed = False

    @property
    def callbacks(self) -> list[Any]:
        """The ``after_this_request`` callbacks registered so far and not run, in order."""
        return list(self.registry.callbacks)

    @property
    def close_callbacks(self) -> list[Any]:
        """The ``call_on_close`` callbacks registered so far and not run, in order."""
        return list(self.registry.close_callbacks)

    def apply(self, response: Response | None = None, *, on_callback_error: str = "raise") -> Response:
        """Run the callbacks on *response* (default: an empty ``200 OK``) with the middleware's own
        loop (order, replacement, errors, header checks, policy, no body on HEAD, 1xx, 204, 304);
        return the response the server would get. Callbacks run once: after this,
        ``after_this_request`` raises :class:`~deferware.ResponseAlreadyStarted`."""
        if self._closed:
            raise RuntimeError("Deferred.close() was already called: call apply() before close().")
        if self._applied:
            raise RuntimeError("Deferred.apply() was already called; callbacks run once.")
        self._applied = True
        log_errors = from_keywords(on_callback_error=on_callback_error)["on_callback_error"] == "log"
        if response is None:
            response = Response()
        environ = {**Request.blank("/").environ, **self.environ}  # what a replacement reads
        app_headers = list(response.headerlist)
        dropped: list[Any] = []
        bound = bind(self.registry, self.environ)
        try:
            response, _, headers, body = run_callbacks(
                self.registry, response, environ, dropped, log_errors, response.status, app_headers
            )
        except BaseException:
            self.registry.drop_callbacks()  # later ones are refused, as after a failed request
            raise
        finally:
            unbind(self.environ, bound, keep=True)
        if body is not response.app_iter:  # as the server would get it: no body on HEAD, 1xx, 204, 304
            response.app_iter = body
        response.headerlist = list(headers)
        close_all([item.close for item in left_behind(dropped, body)])
        return response

    def close(self) -> None:
        """Run the close callbacks (once; errors as in the middleware)."""
        self._closed = True
        run_close_callbacks(self.registry)


@contextmanager
def deferred(environ: WSGIEnvironment | None = None) -> Iterator[Deferred]:
    """Activate a deferware registry for the ``with`` block.

    :param environ: the environ your code sees; the registry is stored in it
        under :data:`~deferware.ENVIRON_KEY`, so both the context form and the
        ``environ=`` form of registration work. A new dict if omitted.
    :returns: a :class:`Deferred` holding what was registered.
    """
    if environ is None:
        environ = {}
    result = Deferred(environ)
    bound = bind(result.registry, environ)
    try:
        yield result
    finally:
        unbind(environ, bound, keep=True)
    environ[ENVIRON_KEY] = result.registry
