"""The bodies deferware hands on, and what their ``close()`` finishes.

:class:`RequestBody` binds the request's registry (context and environ) around its ``close()``
and, while a registration could still be taken, around each step the server pulls, so code in a
later chunk finds its request by either form, and a context copied there carries it. It is a
class with an explicit, idempotent ``close()``, never a generator: a generator closed before it
started never runs its ``finally`` and so skips the inner ``close()``, which PEP 3333 requires on
every path. A body deferware does not need to wrap goes to the server as the application's own.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from .registry import ENVIRON_KEY, Registry, bind, current_registry, unbind
from .responses import describe

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["RequestBody", "close_all", "fail", "left_behind", "prime", "run_close_callbacks", "unique_bodies"]

logger = logging.getLogger("deferware")

#: How much of a file-like body is read per chunk: a file iterates by lines, so a
#: binary file without newlines would be one chunk of its whole size.
BLOCK_SIZE = 64 * 1024


def open_body(iterable: Iterable[bytes]) -> Iterator[bytes]:
    """Start iterating a body; a file-like one (uWSGI's ``wsgi.file_wrapper``) by blocks."""
    # read1, where there is one: on a pipe or socket it returns what has arrived instead of
    # waiting for a whole block, so a live stream stays live.
    read = getattr(iterable, "read1", None) or getattr(iterable, "read", None)
    if read is not None and not isinstance(iterable, (list, tuple)):
        return iter(partial(read, BLOCK_SIZE), b"")
    return iter(iterable)


def prime(app_iter: Iterable[bytes], started: Callable[[], bool], head: list[bytes]) -> Iterator[bytes]:
    """Pull chunks of a lazy application into *head* until *started* says it called
    ``start_response``; return the started iterator. Like Werkzeug's ``run_wsgi_app``, this
    stops at the first chunk after ``start_response``, so a streaming application stays streamed."""
    iterator = open_body(app_iter)
    for chunk in iterator:
        head.append(chunk)
        if started():
            break
    return iterator


class RequestBody:
    """A body whose steps and ``close()`` run as part of one request.

    Yields *head* (chunks pulled while priming, data kept from ``write()``), then the rest of
    *iterable* (from *iterator*, if priming started it). ``close()`` runs once, however often it
    is called: it closes *iterable*, then every iterable given to :meth:`close_also`, each once
    and each even if another raised, and, after :meth:`finish_request`, the request's close
    callbacks; the first error is re-raised after all of that ran.
    """

    __slots__ = (
        "_also", "_environ", "_finishes", "_head", "_iterator", "_registry", "closed", "iterable",
        "pulled",
    )  # fmt: skip

    def __init__(
        self,
        iterable: Iterable[bytes],
        registry: Registry,
        environ: WSGIEnvironment,
        head: list[bytes] | None = None,
        iterator: Iterator[bytes] | None = None,
    ) -> None:
        self.iterable = iterable
        self._registry = registry
        self._environ = environ
        self._head = deque(head) if head else None  # popped as sent: a later pass goes on from there
        self._iterator = iterator
        self._also: list[Any] = []
        self._finishes = False
        self.pulled = 0  # pulls so far, head included: what was pulled cannot be given back
        self.closed = False

    @property
    def untouched(self) -> bool:
        """Whether the application's iterable can still go out as it is."""
        return not (self._head or self._iterator is not None or self.pulled or self.closed)

    def __iter__(self) -> Iterator[bytes]:
        # Once nothing can register with this request and no request is active where the body
        # is pulled (the server's context), binding the request around each chunk would change
        # no outcome: it is left out.
        return self._steps(self._registry.active or current_registry.get(None) is not None)

    def _steps(self, bind_request: bool) -> Iterator[bytes]:
        head = self._head
        while head:
            self.pulled += 1
            yield head.popleft()
        registry, environ = self._registry, self._environ
        set_request, reset_request = current_registry.set, current_registry.reset
        while not self.closed:
            self.pulled += 1  # counted before: a pull that fails advanced the body too
            if bind_request:  # registry.bind and unbind, inline: this runs once per chunk
                previous = environ.get(ENVIRON_KEY)
                if previous is not registry:
                    environ[ENVIRON_KEY] = registry
                token = set_request(registry)
            try:
                iterator = self._iterator
                if iterator is None:
                    iterator = self._iterator = open_body(self.iterable)
                chunk = next(iterator)
            except StopIteration:
                return
            finally:
                if bind_request:
                    reset_request(token)
                    if previous is None:
                        del environ[ENVIRON_KEY]
                    elif previous is not registry:
                        environ[ENVIRON_KEY] = previous
            yield chunk

    def close_also(self, iterables: Iterable[Any]) -> None:
        """Close *iterables* too, after this body's own (see :func:`unique_bodies`)."""
        self._also.extend(iterables)

    def finish_request(self) -> None:
        """Make ``close()`` run the request's close callbacks: this is what the server gets."""
        self._finishes = True

    def owned_by(self, registry: Registry) -> bool:
        """Whether this body belongs to *registry*'s request and can still go out."""
        return self._registry is registry and not self.closed

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        others = left_behind(self._also, self)
        self._also = []
        closers = [close for item in (self.iterable, *others) if (close := getattr(item, "close", None))]
        bound = bind(self._registry, self._environ)
        try:
            try:
                close_all(closers)
            finally:
                if self._finishes:
                    run_close_callbacks(self._registry)
        finally:
            unbind(self._environ, bound)


def unique_bodies(bodies: Iterable[Any]) -> list[Any]:
    """Each of *bodies* once, by identity, in order, without None, without an iterable that a
    :class:`RequestBody` among them wraps (its close() covers it), and without a wrapper whose
    close *is* another one's (WebOb's ``EmptyResponse`` hands on its body's ``close``)."""
    found: dict[int, Any] = {}
    for item in bodies:
        if item is not None:
            found.setdefault(id(item), item)
    for item in list(found.values()):
        if type(item) is RequestBody:
            found.pop(id(item.iterable), None)
        owner = getattr(getattr(item, "close", None), "__self__", item)
        if owner is not item and id(owner) in found:
            found.pop(id(item), None)
    return list(found.values())


def left_behind(bodies: Iterable[Any], *kept: Any) -> list[Any]:
    """The bodies among *bodies* that still need closing besides *kept* (what goes out, or what
    its owner closes): each once, none that a kept body or another RequestBody closes, and no
    RequestBody over a kept body (closing it would close that body too)."""
    return [
        item
        for item in unique_bodies([*kept, *bodies])
        if hasattr(item, "close")
        and all(item is not k and not (type(item) is RequestBody and item.iterable is k) for k in kept)
    ]


def close_all(closers: Iterable[Callable[[], object]]) -> None:
    """Call every closer even if one raises; re-raise the first error at the end."""
    error: BaseException | None = None
    for close in closers:
        try:
            close()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            error = error or exc
    if error is not None:
        try:
            raise error
        finally:
            error = None  # the traceback would hold this frame, and the frame the error


def run_close_callbacks(registry: Registry) -> None:
    """Run the close callbacks, each once, in order, also those added meanwhile. An
    ``Exception`` is logged and the rest run; any other ``BaseException`` (``SystemExit``,
    ``gevent.Timeout``) does not stop the rest either, and the first is re-raised once all ran."""
    error: BaseException | None = None
    while batch := registry.take_close_callbacks():
        for func in batch:
            try:
                result = func()
            except Exception:
                logger.exception("call_on_close callback %s raised; the others still run.", describe(func))
                continue
            except BaseException as exc:  # noqa: BLE001 - re-raised once the others ran
                error = error or exc
                continue
            if hasattr(result, "__await__") or inspect.isgenerator(result):
                getattr(result, "close", lambda: None)()  # nothing will drive it: close it
                logger.error(
                    "call_on_close callback %s returned %s, which nothing drives; it was closed "
                    "unrun. Register a plain (def) function.",
                    describe(func),
                    "a generator" if inspect.isgenerator(result) else "an awaitable",
                )
    if error is not None:
        try:
            raise error
        finally:
            error = None


def close_quietly(iterable: object) -> None:
    try:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    except Exception:
        logger.exception("Closing %r raised while another error was propagating.", iterable)


def fail(registry: Registry, iterables: Iterable[object]) -> None:
    """The request failed before its response reached the server: its callbacks are dropped,
    every body is closed once and the close callbacks run; their errors are logged, so that the
    original exception propagates unchanged."""
    registry.drop_callbacks()
    try:  # an Exception from a close() is logged; any other BaseException once all ran
        close_all([partial(close_quietly, item) for item in unique_bodies(iterables)])
    finally:
        run_close_callbacks(registry)
