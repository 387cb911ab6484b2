"""The registration functions application code calls: ``after_this_request`` and ``call_on_close``.
Both work as a decorator or a call, find the request from the context (bound by
``DeferMiddleware``) or an explicit ``environ=``, check the function, and return it unchanged.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union, overload

from .exceptions import NoActiveRequest
from .registry import current_registry, lookup

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from webob import Response

__all__ = ["CloseCallback", "ResponseCallback", "after_this_request", "call_on_close", "request_active"]

#: What ``after_this_request`` takes: called with the ``webob.Response``; returns None
#: (keep it, possibly changed) or a ``webob.Response`` (replace it).
ResponseCallback = Callable[["Response"], Optional["Response"]]
#: What ``call_on_close`` takes: called with no arguments; its result is ignored.
CloseCallback = Callable[[], object]

_R = TypeVar("_R", bound=ResponseCallback)
_C = TypeVar("_C", bound=CloseCallback)

# co_flags of functions whose call returns something to drive (an awaitable, a
# generator) instead of running the body: nothing would ever drive it.
_ASYNC_FLAGS = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
_DEFERRED_FLAGS = _ASYNC_FLAGS | inspect.CO_GENERATOR


class _Omitted:
    """The default of ``func`` (then the API returns a decorator). Not ``None``, so that
    ``call_on_close(flush())`` (passing the call's ``None`` result) is an error, not a decorator
    nobody applies, which would register nothing."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<func omitted>"


_OMITTED: Any = _Omitted()
_active = current_registry.get


def check_callback(func: object, api: str) -> None:
    """Raise ``TypeError`` unless calling *func* runs it (synchronously)."""
    code = getattr(func, "__code__", None)
    if code is not None:
        flags = code.co_flags
    elif callable(func):  # a partial, a method, an object with __call__: inspect sees through them
        call = getattr(func, "__call__", None)  # noqa: B004 - an object whose __call__ is async
        flags = _flags(func) | _flags(call)
    else:
        raise _not_callable(func, api)
    if flags & _DEFERRED_FLAGS:
        generator = flags & inspect.CO_GENERATOR
        kind, what = ("generator", "a generator") if generator else ("async", "a coroutine")
        raise TypeError(
            f"{api}() cannot take the {kind} function {func!r}: calling it only creates {what}, which "
            "nothing would run (WSGI responses are finished synchronously). Register a plain (def) "
            "function; it may start other work itself."
        )


def _flags(obj: object) -> int:
    if inspect.isgeneratorfunction(obj):
        return inspect.CO_GENERATOR
    if inspect.iscoroutinefunction(obj) or inspect.isasyncgenfunction(obj):
        return inspect.CO_COROUTINE
    return 0


def _not_callable(func: object, api: str) -> TypeError:
    if func is None:
        hint = f"Pass the function itself, not the result of calling it: {api}(flush), not {api}(flush())."
    elif isinstance(func, dict):  # an environ passed positionally: not worth printing whole
        return TypeError(
            f"{api}() needs a callable, got a dict. To name the request's environ, pass it as a keyword: "
            f"@{api}(environ=environ), or {api}(func, environ=environ)."
        )
    elif hasattr(func, "environ"):  # a request object passed positionally
        hint = f"To name the request, pass its environ: @{api}(environ=request.environ)."
    else:
        hint = f"Pass a function, e.g. @{api} on a def."
    return TypeError(f"{api}() needs a callable, got {func!r} of type {type(func).__name__}. {hint}")


@overload
def after_this_request(func: _R, *, environ: WSGIEnvironment | None = None) -> _R: ...
@overload
def after_this_request(*, environ: WSGIEnvironment | None = None) -> Callable[[_R], _R]: ...


def after_this_request(
    func: _R = _OMITTED, *, environ: WSGIEnvironment | None = None
) -> Union[_R, Callable[[_R], _R]]:
    """Call ``func(response)`` with this request's response, once it exists.

    :param func: a callable taking a :class:`webob.Response`. It returns ``None`` to keep the
        (possibly mutated) response, or a :class:`webob.Response` to replace it; anything else is
        a ``TypeError`` naming the callback.
    :param environ: the request's WSGI environ; by default the request active in the current
        context (the one ``DeferMiddleware`` is handling).
    :returns: *func* unchanged, so it works as a decorator; with *func* omitted, a decorator
        (``@after_this_request(environ=request.environ)``).
    :raises TypeError: *func* is not callable, or is an ``async def`` or a generator function.
    :raises NoActiveRequest: there is no request handled by ``DeferMiddleware``.
    :raises ResponseAlreadyStarted: the status and headers were already handed to the server, so
        the callback could never run.

    Callbacks run in registration order, after the application has called ``start_response`` and
    returned its body (after the first chunk, for an app that starts lazily), and before the
    server sees the status and headers. One registered while callbacks run is appended and runs
    too. They do not run when the application raises before producing a response. Example::

        @after_this_request
        def remember_language(response):
            response.set_cookie("user_lang", "de")
    """
    if func is _OMITTED:
        return lambda f: after_this_request(f, environ=environ)
    # The common case (a plain function, the request in the context) first.
    code = getattr(func, "__code__", None)
    if code is None or code.co_flags & _DEFERRED_FLAGS:
        check_callback(func, "after_this_request")
    registry = _active(None) if environ is None else None
    (registry or lookup(environ, "after_this_request")).add_callback(func)
    return func


@overload
def call_on_close(func: _C, *, environ: WSGIEnvironment | None = None) -> _C: ...
@overload
def call_on_close(*, environ: WSGIEnvironment | None = None) -> Callable[[_C], _C]: ...


def call_on_close(
    func: _C = _OMITTED, *, environ: WSGIEnvironment | None = None
) -> Union[_C, Callable[[_C], _C]]:
    """Call ``func()`` after the response has been sent.

    "Sent" means the server called ``close()`` on the iterable ``DeferMiddleware`` returned (PEP
    3333), also when the client went away early; if the application raises before producing a
    response, close callbacks run before the exception leaves the middleware.

    :param func: a callable taking no arguments; its return value is ignored.
    :param environ: the request's WSGI environ; by default the active request.
    :returns: *func* unchanged (or a decorator, with *func* omitted).
    :raises TypeError: *func* is not callable, or is an ``async def`` or a generator function.
    :raises NoActiveRequest: there is no request handled by ``DeferMiddleware``.
    :raises ResponseAlreadyStarted: the close callbacks already ran, or the response was handed to
        the server without a close hook (no close callback was registered before the application
        returned), so *func* could never run.

    Close callbacks run exactly once each, in registration order. One that raises an
    ``Exception`` is logged on the ``"deferware"`` logger and the rest still run; one that raises
    any other ``BaseException`` (``SystemExit``, ``gevent.Timeout``) does not stop the rest
    either, and the first such exception is re-raised once they all ran. Example::

        call_on_close(lambda: audit_log.flush())
    """
    if func is _OMITTED:
        return lambda f: call_on_close(f, environ=environ)
    check_callback(func, "call_on_close")
    lookup(environ, "call_on_close").add_close_callback(func)
    return func


def request_active(*, environ: WSGIEnvironment | None = None) -> bool:
    """Whether ``after_this_request`` would take a callback here, now.

    For library code that may run inside a request or not (a CLI, a task queue, a test): True
    when a request handled by ``DeferMiddleware`` is found, in the current context or through
    *environ* (as ``after_this_request`` finds it), and its response has not been handed to
    the server yet. Never raises for a missing request. Example::

        if request_active():
            after_this_request(add_timing_header)
    """
    try:
        return lookup(environ, "request_active").taking
    except NoActiveRequest:
        return False
