"""Test helpers for code that calls ``after_this_request`` or ``call_on_close``.

Use :func:`deferred` in your own unit tests to run such code without a server
or ``DeferMiddleware``: it activates a registry for the block (in the context,
and in the environ you pass), and the returned :class:`Deferred` then applies
the collected callbacks to a response you give it, with the middleware's
semantics, and runs the close callbacks::

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

from webob import Response

from .iterators import run_close_callbacks
from .registry import _SEAL, CLOSED, ENVIRON_KEY, FINISHING, HANDED_OVER, OPEN, Registry, current_registry
from .responses import CheckedHeaders, check_response

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["Deferred", "deferred"]


class Deferred:
    """The callbacks registered inside a :func:`deferred` block."""

    def __init__(self, environ: WSGIEnvironment) -> None:
        self.environ = environ
        self.registry = Registry()

    @property
    def callbacks(self) -> list[Any]:
        """The ``after_this_request`` callbacks registered so far, in order."""
        return _pending(self.registry.callbacks)

    @property
    def close_callbacks(self) -> list[Any]:
        """The ``call_on_close`` callbacks registered so far, in order."""
        return _pending(self.registry.close_callbacks)

    def apply(self, response: Response | None = None) -> Response:
        """Run the callbacks on *response* (default: an empty ``200 OK``), as
        ``DeferMiddleware`` would, and return the final response.

        Order, replacement, the ``TypeError`` for a bad return value and the
        :class:`~deferware.InvalidHeader` checks are the middleware's. Callbacks
        run once: after this, ``after_this_request`` raises
        :class:`~deferware.ResponseAlreadyStarted`, as after the real hand-over.
        """
        from .middleware import _replacement  # the middleware's own rule

        if response is None:
            response = Response()
        if self.registry.phase != OPEN:
            if self.registry.phase == CLOSED:
                raise RuntimeError("Deferred.close() was already called: call apply() before close().")
            raise RuntimeError("Deferred.apply() was already called; callbacks run once.")
        callbacks = self.registry.callbacks
        originals = list(response.headerlist)
        checked = CheckedHeaders(originals)
        checked.changed = False
        response.headerlist = checked
        dropped: list[Any] = []
        token = current_registry.set(self.registry)
        self.registry.phase = FINISHING
        try:
            index = 0
            while True:
                if index == len(callbacks):
                    Registry.seal(callbacks)
                func = callbacks[index]
                index += 1
                if func is _SEAL:
                    break
                response.headerlist.owner = func
                status = response.status
                result = func(response)
                if result is not None:
                    response = _replacement(func, response, result, dropped)
                check_response(response, func, {id(status): status}, originals)
        finally:
            current_registry.reset(token)
            self.registry.phase = HANDED_OVER
            Registry.seal(callbacks)  # also when a callback raised: later ones are refused
        response.headerlist = list(response.headerlist)
        return response

    def close(self) -> None:
        """Run the close callbacks (once; errors are logged, as in the middleware)."""
        run_close_callbacks(self.registry)


def _pending(items: list[Any]) -> list[Any]:
    end = items.index(_SEAL) if _SEAL in items else len(items)
    return items[:end]


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
    environ[ENVIRON_KEY] = result.registry
    token = current_registry.set(result.registry)
    try:
        yield result
    finally:
        current_registry.reset(token)
