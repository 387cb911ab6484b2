"""The iterables deferware hands on: the application's body, primed and
context-bound, and the outgoing iterable whose ``close()`` finishes the request.

Both are classes with an explicit, idempotent ``close()``, never generators: a
generator-based wrapper that is closed before it started never runs its
``finally`` and so skips the inner ``close()`` (PEP 3333 requires that
``close()`` of the application's iterable runs on every path).

The application's code runs in the context the server calls it in, as it does
without deferware, never in a copied context (where a ``ContextVar.reset``
token the application made in one chunk would be invalid in the next, which
breaks e.g. Flask's ``stream_with_context``). Its chunks are pulled through
:func:`~deferware.registry.pull`, which lets the application's code find its
request without binding anything per chunk; ``close()`` runs with the request
bound. A registration from the body therefore gets what the request's phase
says (a close callback taken, or ``ResponseAlreadyStarted``), not
``NoActiveRequest``.
"""

from __future__ import annotations

import logging
from functools import partial
from itertools import chain
from typing import Any, Callable, Iterable, Iterator

from .registry import _SEAL, CLOSED, REFUSE_CLOSE_CALLBACKS, Registry, current_registry, pull
from .responses import describe

__all__ = ["AppBody", "ClosingIterable", "close_all", "run_close_callbacks"]

logger = logging.getLogger("deferware")


def _close_bound(registry: Registry | None, close: Callable[[], object]) -> None:
    """Call *close* with *registry* active (None: as it is)."""
    if registry is None:
        close()
        return
    token = current_registry.set(registry)
    try:
        close()
    finally:
        current_registry.reset(token)


class AppBody:
    """The application's body as the response sees it.

    Yields *head* (data passed to ``write()`` and chunks pulled while waiting for
    a lazy ``start_response``) and then the rest of the application's iterator,
    each later chunk pulled as a step of *registry*'s request (see
    :func:`~deferware.registry.pull`; None: the iterator is pulled so already).
    ``close()`` closes the application's iterable exactly once, with *registry*
    active.
    """

    __slots__ = (
        "_iterator", "_kept", "_live", "_registry", "app_iter", "closed", "consumed",
        "failed", "head", "started",
    )  # fmt: skip

    def __init__(
        self,
        app_iter: Iterable[bytes],
        head: list[bytes] | None,
        iterator: Iterator[bytes] | None,
        registry: Registry | None,
    ) -> None:
        self.app_iter = app_iter
        self.head = head
        #: The application's iterator once priming started it, else None.
        self._iterator = iterator
        self._registry = registry
        self.started = False
        self.closed = False
        #: A list under ``on_callback_error="log"`` while callbacks run: reading
        #: the body then consumes none of it (see _Recorder), so a failed
        #: callback's reads need no undoing. ``stop_recording`` ends that.
        self.consumed: list[bytes] | None = None
        #: The chunks callbacks read, once recording stopped: sent first.
        self._kept: list[bytes] | None = None
        #: The one iterator reads go through while recording.
        self._live: Iterator[bytes] | None = None
        #: True once the application's iterable raised while recording: the
        #: application failed, which no rollback of a callback can undo. (A flag,
        #: not the exception: its traceback would hold this body in a cycle.)
        self.failed = False

    @property
    def untouched(self) -> bool:
        """True if the application's iterable can be handed on as it is."""
        return not self.head and self._iterator is None and not self.started

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        if self.consumed is not None:
            return _Recorder(self)
        if self._live is not None:  # callbacks read it while recording: they consumed nothing
            return chain(self._kept or (), self._live)
        return self._open()

    def stop_recording(self) -> None:
        """The callbacks are done: from now on the body is read on (the chunks
        they read first), keeping nothing more."""
        self._kept = self.consumed
        self.consumed = None

    def _open(self) -> Iterator[bytes]:
        iterator = self._iterator
        if iterator is None:
            iterator = iter(self.app_iter)
        registry = self._registry
        if registry is not None:
            return pull(registry, self.head, iterator)
        return chain(self.head, iterator) if self.head else iterator

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        close = getattr(self.app_iter, "close", None)
        if close is not None:
            _close_bound(self._registry, close)


class _Recorder:
    """One pass over an :class:`AppBody` while callbacks run under
    ``on_callback_error="log"``.

    The application's body is read once, through the body's one live iterator;
    each chunk is kept in ``consumed`` and every pass starts at the first
    chunk, taking those kept before reading on. So reading consumes nothing:
    however often a callback goes over the body, and whether it then fails or
    not, the body goes on whole (the server's pass too, see
    ``AppBody.__iter__``). An error from the application's iterable is noted
    (``failed``). Python per chunk, but only on that path.
    """

    __slots__ = ("_body", "_index", "_kept")

    def __init__(self, body: AppBody) -> None:
        self._body = body
        self._kept: list[bytes] = body.consumed  # type: ignore[assignment] # a list while recording
        self._index = 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        kept = self._kept
        index = self._index
        if index < len(kept):
            self._index = index + 1
            return kept[index]
        body = self._body
        try:
            live = body._live
            if live is None:  # opened here, so that an error opening it is noted too
                live = body._live = body._open()
            chunk = next(live)
        except StopIteration:
            raise
        except Exception:
            body.failed = True
            raise
        if body.consumed is kept:  # still recording (the server streams what follows)
            kept.append(chunk)
            self._index = index + 1
        return chunk


def prime(app_iter: Iterable[bytes], registry: Any, head: list[bytes]) -> Iterator[bytes]:
    """Pull chunks of a lazy application until it has called ``start_response``.

    Pulled chunks are appended to *head*; the started iterator is returned (it
    may be exhausted). Like Werkzeug's ``run_wsgi_app``, this stops at the first
    chunk after ``start_response``, so a streaming app is not buffered. The
    caller closes *app_iter* if this raises.
    """
    iterator = iter(app_iter)
    for chunk in iterator:
        head.append(chunk)
        if registry.status is not None:
            break
    return iterator


def close_all(closers: Iterable[Callable[[], object]]) -> None:
    """Call every closer even if one raises; re-raise the first error at the end."""
    error: BaseException | None = None
    for close in closers:
        try:
            close()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            if error is None:
                error = exc
    if error is not None:
        raise error


def run_close_callbacks(registry: Registry, phase: int = CLOSED) -> None:
    """Seal and run the close callbacks, each once, logging (not raising) errors."""
    registry.phase = phase
    callbacks = Registry.seal(registry.close_callbacks)
    try:
        for func in callbacks:
            if func is _SEAL:
                break
            try:
                result = func()
            except Exception:
                logger.exception(
                    "call_on_close callback %s raised; the remaining close callbacks still run.",
                    describe(func),
                )
                continue
            if hasattr(result, "__await__"):
                getattr(result, "close", lambda: None)()  # nothing will await it: close it
                logger.error(
                    "call_on_close callback %s returned an awaitable, which nothing will "
                    "await; it was closed unrun. Register a plain (def) function.",
                    describe(func),
                )
    finally:
        # The environ may outlive the request: the list that ran goes, and later
        # registrations are refused without being stored.
        registry.close_callbacks = REFUSE_CLOSE_CALLBACKS[phase]


class ClosingIterable:
    """What the server gets when deferware must see ``close()``.

    Iterates *iterable* as the request's steps (see
    :func:`~deferware.registry.pull`), unless *bind* is false: an
    :class:`AppBody` does that itself. ``close()`` runs once, however often it is
    called: it closes the iterables in *closers* with the request active (the
    first error is re-raised after everything ran, as the application's own
    ``close()`` error would be without deferware), then runs the request's
    close callbacks.
    """

    __slots__ = ("_bind", "_closed", "_closers", "_iterable", "_registry")

    def __init__(
        self,
        iterable: Iterable[bytes],
        closers: list[Callable[[], object]],
        registry: Registry,
        bind: bool,
    ) -> None:
        self._iterable = iterable
        self._closers = closers
        self._registry = registry
        self._bind = bind
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        if not self._bind:
            return iter(self._iterable)
        return pull(self._registry, None, iter(self._iterable))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            _close_bound(self._registry, partial(close_all, self._closers))
        finally:
            self._closers = []
            run_close_callbacks(self._registry)
            # The registry holds the server's write() and start_response, the server holds the
            # environ, the environ holds the registry: break the cycle.
            self._registry.server_write = None  # type: ignore[attr-defined]
            self._registry.server_start_response = None  # type: ignore[attr-defined]
