"""The per-request callback registry, where it lives, and how it is found.

One :class:`Registry` is made per request by ``DeferMiddleware`` and stored in
the WSGI environ under :data:`ENVIRON_KEY`. The environ is the source of truth;
the context variable is only a convenience pointer to the same object, bound by
the middleware around every stretch of application code it drives.

Registration can race with the middleware finishing the response (a worker
thread registering while the response is handed over). The lists are therefore
*sealed* rather than swapped: the finisher appends the ``_SEAL`` marker and runs
the entries before it. A registrant appends, then looks for the marker: an entry
that landed after it is taken back out and its registrant gets
:class:`ResponseAlreadyStarted`. List appends are atomic, so each registration
either runs or raises: none is lost.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Callable

from .exceptions import NoActiveRequest, ResponseAlreadyStarted

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["ENVIRON_KEY", "Registry", "current_registry", "lookup", "too_late"]


#: The environ key under which ``DeferMiddleware`` stores the request's registry.
ENVIRON_KEY = "deferware.registry"

#: Points at the registry of the request whose code is running in this context.
_current: ContextVar[Registry] = ContextVar("deferware.registry")
current_registry = _current


class _Seal:
    """Marker appended to a callback list when it stops taking entries."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<deferware seal>"


_SEAL: Any = _Seal()

# Where a request is (Registry.phase); only the middleware moves it forward.
OPEN = 0  #: the application is running; every registration is taken
WRITTEN = 1  #: as OPEN, but the application passed data to write()
HANDED_OVER = 2  #: status and headers went to the server, without a close hook
HOOKED = 3  #: status and headers went to the server; close() will run close callbacks
CLOSED = 4  #: the close callbacks ran
FAILED = 5  #: the application raised before a response existed

_TOO_LATE_FOR_CLOSE = {
    HANDED_OVER: "this response was handed to the server without a close hook, because no "
    "close callback had been registered when the application returned it",
    CLOSED: "the response's close() has already run",
    FAILED: "the request already ended with an exception",
}


class Registry:
    """The callbacks registered during one request.

    ``callbacks`` are ``after_this_request`` functions, ``close_callbacks`` are
    ``call_on_close`` functions, both in registration order. Only
    ``DeferMiddleware`` creates and finishes registries; application code adds to
    them through :func:`deferware.after_this_request` and
    :func:`deferware.call_on_close`.
    """

    __slots__ = ("callbacks", "close_callbacks", "phase")

    def __init__(self) -> None:
        self.callbacks: list[Any] = []
        self.close_callbacks: list[Any] = []
        self.phase = OPEN

    def __repr__(self) -> str:
        return f"<deferware.Registry phase={self.phase} callbacks={self.callbacks!r} close_callbacks={self.close_callbacks!r}>"

    def add_callback(self, func: Callable[..., Any]) -> None:
        """Append an ``after_this_request`` callback, or raise if it can no longer run."""
        if not _add(self.callbacks, func):
            self.refuse_callback(func)

    def refuse_callback(self, func: Callable[..., Any]) -> None:
        """Raise the error for an ``after_this_request`` that came too late."""
        raise ResponseAlreadyStarted(
                f"after_this_request({func!r}) came too late: the status and headers of "
                "this response were already handed to the server (or the request failed "
                "before a response existed), so the callback could never run. Register "
                "it before the application returns its response; for work after the "
                "response was sent, use call_on_close()."
            )

    def add_close_callback(self, func: Callable[[], object]) -> None:
        """Append a ``call_on_close`` callback, or raise if it can no longer run."""
        if not _add(self.close_callbacks, func):
            reason = _TOO_LATE_FOR_CLOSE.get(self.phase, _TOO_LATE_FOR_CLOSE[CLOSED])
            raise ResponseAlreadyStarted(
                f"call_on_close({func!r}) came too late: {reason}, so the callback could "
                "never run. Register it before the application returns its response."
            )

    @staticmethod
    def seal(items: list[Any]) -> list[Any]:
        """Stop *items* taking entries; return it (entries before the seal run)."""
        if _SEAL not in items:
            items.append(_SEAL)
        return items

    @staticmethod
    def forget(items: list[Any]) -> None:
        """Drop the entries before the seal once they ran (the environ may outlive
        the request). Overwritten, not deleted: positions must not shift under a
        late registrant still checking where its entry landed."""
        seal_at = items.index(_SEAL)
        items[:seal_at] = [None] * seal_at


def _add(items: list[Any], func: Any) -> bool:
    """Append *func*; False if it landed after the seal (and was taken back out)."""
    items.append(func)
    return _SEAL not in items or not too_late(items, func)


def too_late(items: list[Any], func: Any) -> bool:
    """After appending *func* to a sealed list: take it back out if it landed
    after the seal, and say so. (If the seal is not there yet, the finisher
    will append it after our entry: not too late.)"""
    seal_at = items.index(_SEAL)
    for index in range(len(items) - 1, seal_at, -1):
        if items[index] is func:
            items[index] = None  # not deleted: positions must not shift (see forget)
            return True
    return False


def lookup(environ: WSGIEnvironment | None, api: str) -> Registry:
    """Return the registry of *environ*, or of the request active in this context.

    *api* names the public function asking, for the error message.
    """
    if environ is None:
        registry = _current.get(None)
        if registry is None:
            raise NoActiveRequest(
                f"{api}() was called outside a request handled by DeferMiddleware. "
                "Wrap the WSGI application in deferware.DeferMiddleware(app), or, from "
                "code that runs outside the request's context (another thread, a task "
                f"queue), pass the request's environ: {api}(func, environ=request.environ)."
            )
        return registry
    registry = environ.get(ENVIRON_KEY)
    if not isinstance(registry, Registry):
        raise NoActiveRequest(
            f"{api}(environ=...) was given an environ that holds no deferware registry "
            f"(no {ENVIRON_KEY!r} key): this request was not handled by DeferMiddleware. "
            "Wrap the WSGI application in deferware.DeferMiddleware(app), and pass the "
            "environ of the request being handled (e.g. request.environ)."
        )
    return registry
