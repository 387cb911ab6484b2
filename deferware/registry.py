"""The per-request callback registry, where it lives, and how code finds it.

``DeferMiddleware`` makes one :class:`Registry` per request and stores it in the
environ under :data:`ENVIRON_KEY`, the source of truth; the context variable
:data:`current_registry` points to the same object while the middleware drives
application code (:func:`bind`, :func:`unbind`). A registry holds only what
application code gave it, never anything of the server's, and callbacks leave
it as they run: keeping one alive (in the environ, in a copied context) keeps
nothing else alive and makes no reference cycle.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Callable

from .exceptions import NoActiveRequest, ResponseAlreadyStarted

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["ENVIRON_KEY", "Registry", "bind", "current_registry", "lookup", "unbind"]

#: The environ key under which ``DeferMiddleware`` stores the request's registry.
ENVIRON_KEY = "deferware.registry"

#: The registry of the request whose code runs in this context.
current_registry: ContextVar[Registry] = ContextVar("deferware.registry")

# One lock for every registry: registration can race with the middleware
# finishing the response (a worker thread registering during the hand-over).
# Its critical sections are a few assignments and never run user code, so one
# shared lock costs nothing, where one per request would. acquire/release
# rather than ``with``: the same, for less work per use.
_lock = threading.Lock()
_acquire = _lock.acquire
_release = _lock.release

_CALLBACK_TOO_LATE = (
    "after_this_request({func!r}) came too late: {why}, so it could never run. Register it before the "
    "application returns its response (or, for a lazy generator, before its first chunk); for work "
    "after the response was sent, use call_on_close()."
)
_CLOSE_TOO_LATE = (
    "call_on_close({func!r}) came too late: {why}, so it could never run. Register it before the "
    "application returns its response."
)
_WHY_SENT = "the status and headers of this response were already handed to the server"
_WHY_FAILED = "the request already ended with an exception"
_WHY_UNHOOKED = (
    "this response was handed to the server without a close hook (no close callback was registered "
    "when the application returned it)"
)
_WHY_RAN = "the close callbacks of this response already ran"


class Registry:
    """The callbacks registered during one request, in registration order.

    ``after_this_request`` and ``call_on_close`` callbacks each sit in a list that takes entries
    until the middleware stops it. The guarantee this class alone owns: a registration either runs
    or raises :class:`~deferware.ResponseAlreadyStarted`, never lost. Adding, taking the pending
    entries and stopping a list happen under one lock, so an entry added while the list is drained
    (by a callback, or another thread) is taken by the drain, and one added after the drain found
    the list empty is refused.
    """

    # No __init__: every request makes one; the class attributes are the initial
    # state (each change assigns a new value, never mutates these).
    taking = True  # whether after_this_request is still taken
    taking_close = True  # whether call_on_close is still taken
    #: The callbacks waiting to run (read-only: add with the methods below).
    callbacks: tuple[Callable[..., Any], ...] = ()
    close_callbacks: tuple[Callable[[], object], ...] = ()
    _why_late = _WHY_SENT
    _why_closed = _WHY_UNHOOKED

    @property
    def active(self) -> bool:
        """Whether a registration of either kind can still be taken."""
        return self.taking or self.taking_close

    def __repr__(self) -> str:
        return f"<deferware.Registry callbacks={self.callbacks!r} close_callbacks={self.close_callbacks!r}>"

    def add_callback(self, func: Callable[..., Any]) -> None:
        """Take an ``after_this_request`` callback, or raise if it could never run."""
        _acquire()
        try:
            if self.taking:
                self.callbacks += (func,)
                return
        finally:
            _release()
        raise ResponseAlreadyStarted(_CALLBACK_TOO_LATE.format(func=func, why=self._why_late))

    def add_close_callback(self, func: Callable[[], object]) -> None:
        """Take a ``call_on_close`` callback, or raise if it could never run."""
        _acquire()
        try:
            if self.taking_close:
                self.close_callbacks += (func,)
                return
        finally:
            _release()
        raise ResponseAlreadyStarted(_CLOSE_TOO_LATE.format(func=func, why=self._why_closed))

    def take_callbacks(self) -> tuple[Callable[..., Any], ...]:
        """Remove and return the pending callbacks; if there are none, stop taking them."""
        _acquire()
        try:
            taken = self.callbacks
            if taken:
                self.callbacks = ()
            else:
                self.taking = False
            return taken
        finally:
            _release()

    def take_close_callbacks(self) -> tuple[Callable[[], object], ...]:
        """Remove and return the pending close callbacks; if none, stop taking them."""
        _acquire()
        try:
            taken = self.close_callbacks
            if taken:
                self.close_callbacks = ()
            elif self.taking_close:
                self.taking_close = False
                self._why_closed = _WHY_FAILED if self._why_late is _WHY_FAILED else _WHY_RAN
            return taken
        finally:
            _release()

    # The stop_* methods stop taking a kind if none of it is pending; they return whether it stopped.
    def stop_callbacks(self, why: str = _WHY_SENT) -> bool:
        """Stop ``after_this_request``; *why* is what a late one is told."""
        _acquire()
        try:
            if self.callbacks:
                return False
            self.taking, self._why_late = False, why
            return True
        finally:
            _release()

    def stop_close_callbacks(self) -> bool:
        """Stop ``call_on_close``: the response goes out without a close hook."""
        _acquire()
        try:
            if self.close_callbacks:
                return False
            self.taking_close = False
            return True
        finally:
            _release()

    def stop_if_idle(self) -> bool:
        """Stop both kinds, if neither has a pending entry."""
        _acquire()
        try:
            if self.callbacks or self.close_callbacks:
                return False
            self.taking = self.taking_close = False
            return True
        finally:
            _release()

    def drop_callbacks(self) -> None:
        """The request failed before a response existed: its callbacks never run."""
        _acquire()
        try:
            self.taking, self._why_late = False, _WHY_FAILED
            self.callbacks = ()
        finally:
            _release()


Bound = tuple["Token[Registry]", Any]


def bind(registry: Registry, environ: WSGIEnvironment) -> Bound:
    """Make *registry* the active one, in the context and in *environ*."""
    previous = environ.get(ENVIRON_KEY)
    environ[ENVIRON_KEY] = registry
    return current_registry.set(registry), previous


def unbind(environ: WSGIEnvironment, bound: Bound, keep: bool = False) -> None:
    """Undo :func:`bind`. With *keep*, the environ keeps the registry unless it held an enclosing
    request's, still active (a sub-request, an application wrapped twice), before."""
    token, previous = bound
    current_registry.reset(token)
    if keep and not (isinstance(previous, Registry) and previous.active):
        return
    if previous is None:
        environ.pop(ENVIRON_KEY, None)
    else:
        environ[ENVIRON_KEY] = previous


_NO_REQUEST = (
    "{api}() was called outside a request handled by DeferMiddleware. Wrap the WSGI application in "
    "deferware.DeferMiddleware(app); from another thread, pass the request's environ: {api}(func, "
    "environ=request.environ). (The chunks a server pulls from a response body once nothing can be "
    "registered for it any more run outside the request: register before the application returns.)"
)


def lookup(environ: WSGIEnvironment | None, api: str) -> Registry:
    """The registry of *environ*, else of the request active in this context (*api* names the
    caller). An environ without one belongs to a sub-request the middleware did not wrap
    (Pyramid's ``invoke_subrequest``, ``Request.blank``), made while the request active in this
    context is handled: it belongs to that request, as for the context form."""
    if environ is not None:
        try:
            registry = environ.get(ENVIRON_KEY)
        except AttributeError:
            hint = (
                "request.environ" if hasattr(environ, "environ") else "the environ the application was given"
            )
            raise TypeError(
                f"{api}(environ=...) needs the request's WSGI environ (a dict), got {environ!r} of type "
                f"{type(environ).__name__}. Pass {hint}."
            ) from None
        if isinstance(registry, Registry):
            return registry
    registry = current_registry.get(None)
    if registry is not None:
        return registry
    if environ is not None:
        raise NoActiveRequest(
            f"{api}(environ=...) was given an environ that holds no deferware registry (no {ENVIRON_KEY!r} "
            "key), and no request is active in this context. Wrap the WSGI application in "
            "deferware.DeferMiddleware(app) and pass the environ of the request it is handling. (In a "
            "response body's chunks that the server pulls once nothing can be registered for it, no "
            "request is active: register before the application returns.)"
        )
    raise NoActiveRequest(_NO_REQUEST.format(api=api))
