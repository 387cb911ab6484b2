"""The per-request callback registry, where it lives, and how it is found.

One :class:`Registry` is made per request by ``DeferMiddleware`` and stored in
the WSGI environ under :data:`ENVIRON_KEY`. The environ is the source of truth;
the context variable is only a convenience pointer to the same object, bound by
the middleware around every stretch of application code it drives.

Registration can race with the middleware finishing the response (a worker
thread registering while the response is handed over). The lists are therefore
*sealed* rather than swapped: the finisher appends the ``_SEAL`` marker and runs
the entries before it. A registrant appends, then looks for the marker: if its
entry landed after it, the registrant gets :class:`ResponseAlreadyStarted`. List
appends are atomic, so each registration either runs or raises: none is lost.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .exceptions import NoActiveRequest, ResponseAlreadyStarted

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["ENVIRON_KEY", "FINISHED", "Registry", "current_registry", "lookup", "pull", "too_late"]


#: The environ key under which ``DeferMiddleware`` stores the request's registry.
ENVIRON_KEY = "deferware.registry"

#: Points at the registry of the request whose code is running in this context.
current_registry: ContextVar[Registry] = ContextVar("deferware.registry")


class _Seal:
    """Marker appended to a callback list when it stops taking entries."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<deferware seal>"


_SEAL: Any = _Seal()

# Where a request is (Registry.phase); only the middleware moves it forward.
# A phase is always moved forward *before* a list is sealed, so a registrant
# that sees a phase <= WRITTEN after appending knows its entry precedes any seal.
OPEN = 0  #: the application is running; every registration is taken
WRITTEN = 1  #: as OPEN, but the application passed data to write()
FINISHING = 2  #: the callbacks run; registrations go on until the seal
HANDED_OVER = 3  #: status and headers went to the server, without a close hook
HOOKED = 4  #: status and headers went to the server; close() will run close callbacks
CLOSED = 5  #: the close callbacks ran
FAILED = 6  #: the application raised before a response existed

_TOO_LATE_FOR_CLOSE = {
    HANDED_OVER: "this response was handed to the server without a close hook, because no "
    "close callback had been registered when the application returned it",
    CLOSED: "the response's close() has already run",
    FAILED: "the request already ended with an exception",
}


_CALLBACK_TOO_LATE = (
    "after_this_request({func!r}) came too late: the status and headers of this "
    "response were already handed to the server (or the request failed before a "
    "response existed), so the callback could never run. Register it before the "
    "application returns its response; for work after the response was sent, use "
    "call_on_close()."
)
_CLOSE_TOO_LATE = (
    "call_on_close({func!r}) came too late: {reason}, so the callback could never run. "
    "Register it before the application returns its response."
)


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
        return (
            f"<deferware.Registry phase={self.phase} callbacks={self.callbacks!r} "
            f"close_callbacks={self.close_callbacks!r}>"
        )

    def refuse_callback(self, func: Callable[..., Any]) -> None:
        """Raise the error for an ``after_this_request`` that came too late.

        (``after_this_request`` appends to ``callbacks`` itself: it is the hot
        path of every registration, see :mod:`deferware.api`.)"""
        raise ResponseAlreadyStarted(_CALLBACK_TOO_LATE.format(func=func))

    def add_close_callback(self, func: Callable[[], object]) -> None:
        """Append a ``call_on_close`` callback, or raise if it can no longer run."""
        items = self.close_callbacks
        items.append(func)
        if self.phase > WRITTEN and too_late(items, func):
            reason = _TOO_LATE_FOR_CLOSE.get(self.phase, _TOO_LATE_FOR_CLOSE[CLOSED])
            raise ResponseAlreadyStarted(_CLOSE_TOO_LATE.format(func=func, reason=reason))

    @staticmethod
    def seal(items: list[Any]) -> list[Any]:
        """Stop *items* taking entries; return it (entries before the seal run).

        Move the phase forward first (see the phase constants).
        """
        if _SEAL not in items:
            items.append(_SEAL)
        return items


class _Refusing(list):  # type: ignore[type-arg]
    """A finished callback list: refuses every append, and so never grows."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        super().__init__([_SEAL])
        self.message = message

    def append(self, func: Any) -> None:
        raise ResponseAlreadyStarted(self.message.format(func=func))


#: What a request's ``callbacks`` become once they ran and the response went to
#: the server, and its ``close_callbacks`` once they ran (by the phase that ended
#: them). A registration then raises without being stored: a refused function
#: kept in the list may close over the environ, which holds the registry, and
#: would make the request a reference cycle. Shared: they never change.
REFUSE_CALLBACKS: list[Any] = _Refusing(_CALLBACK_TOO_LATE)
REFUSE_CLOSE_CALLBACKS: dict[int, list[Any]] = {
    phase: _Refusing(_CLOSE_TOO_LATE.replace("{reason}", reason))
    for phase, reason in _TOO_LATE_FOR_CLOSE.items()
}


def finished_registry() -> Registry:
    """The registry left in the environ once a response went to the server
    without a close hook: every registration through it is refused.

    It replaces the request's own registry there, because that one holds the
    server's ``write()`` (a bound method of the server's request object, which
    holds the environ): leaving it would make every request a reference cycle
    that only the garbage collector could free.
    """
    registry = Registry()
    registry.callbacks = REFUSE_CALLBACKS
    registry.close_callbacks = REFUSE_CLOSE_CALLBACKS[HANDED_OVER]
    registry.phase = HANDED_OVER
    return registry


#: Shared: it never changes, whatever is registered through it.
FINISHED = finished_registry()


def too_late(items: list[Any], func: Any) -> bool:
    """Whether *func*, just appended to *items*, landed after the seal.

    Works on a snapshot (an atomic copy), so the finisher may change the list
    meanwhile. An entry after the seal never runs; it is left in place, until
    the finisher swaps the whole list for a refusing one (``REFUSE_CALLBACKS``).
    """
    snapshot = items[:]
    try:
        seal_at = snapshot.index(_SEAL)
    except ValueError:
        return False  # not sealed yet: the seal will land after our entry
    return any(item is func for item in snapshot[seal_at + 1 :])


def pull(registry: Registry, head: list[bytes] | None, iterator: Iterator[bytes]) -> Iterator[bytes]:
    """Yield *head*, then each chunk of *iterator*, pulled as a step of *registry*'s request.

    The server pulls a body in its own context. Application code running in a
    step (a generator body) must still find its request: to add a close
    callback, or to be told ``ResponseAlreadyStarted``. Binding the context
    variable around every step would cost a ``set`` and a ``reset`` per chunk
    (about 0.12 µs, two copies of the context's mapping), a tenth of what
    copying a 64 KiB chunk costs. So a step binds nothing: this generator's
    frame, which is on the stack under the application's code while a step
    runs, is how :func:`lookup` finds the request (:func:`_pulling`), walking
    the stack only on that path. When another request is bound in the context
    (a sub-request's body pulled inside the enclosing request), the variable is
    bound for the step, so that the innermost request wins, as everywhere else.
    """
    if head:
        yield from head
    get = current_registry.get
    pull_next = iterator.__next__
    while True:
        # Two branches, not one with an optional token: the common one has no
        # ``finally`` to run (13 ns less per chunk, a seventh of this generator).
        bound = get(None)
        if bound is None or bound is registry:
            try:
                chunk = pull_next()
            except StopIteration:
                return
        else:
            token = current_registry.set(registry)
            try:
                chunk = pull_next()
            except StopIteration:
                return
            finally:
                current_registry.reset(token)
        yield chunk


_PULL_CODE = pull.__code__


def _pulling() -> Registry | None:
    """The registry of the innermost body :func:`pull` is pulling on this
    thread's stack (this code runs inside one of its steps), else None."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is _PULL_CODE:
            registry: Registry = frame.f_locals["registry"]
            return registry
        frame = frame.f_back  # type: ignore[assignment]
    return None


def lookup(environ: WSGIEnvironment | None, api: str) -> Registry:
    """Return the registry of *environ*, or of the request active in this context
    (bound by the middleware, or whose body is being pulled, see :func:`pull`).

    *api* names the public function asking, for the error message.
    """
    if environ is None:
        registry = current_registry.get(None) or _pulling()
        if registry is None:
            raise NoActiveRequest(
                f"{api}() was called outside a request handled by DeferMiddleware. "
                "No request is active in this context: wrap the WSGI application in "
                "deferware.DeferMiddleware(app), or, from another thread or a task queue "
                f"while the request is handled, pass its environ: {api}(func, "
                "environ=request.environ). From a close callback, or from a response body "
                "the server iterates after the hand-over (with no call_on_close registered "
                "before the application returned, the body is not wrapped), it comes too "
                "late for either kind of callback: register before the application returns."
            )
        return registry
    try:
        registry = environ.get(ENVIRON_KEY)
    except AttributeError:
        hint = "request.environ" if hasattr(environ, "environ") else "the environ the application was given"
        raise TypeError(
            f"{api}(environ=...) needs the request's WSGI environ (a dict), got {environ!r} "
            f"of type {type(environ).__name__}. Pass {hint}."
        ) from None
    if not isinstance(registry, Registry):
        raise NoActiveRequest(
            f"{api}(environ=...) was given an environ that holds no deferware registry "
            f"(no {ENVIRON_KEY!r} key): this request was not handled by DeferMiddleware. "
            "Wrap the WSGI application in deferware.DeferMiddleware(app), and pass the "
            "environ of the request being handled (e.g. request.environ)."
        )
    return registry
