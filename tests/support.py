"""Sample WSGI applications, close() counters, an environ and a server-like driver.

Plain functions and classes for every test module (``conftest.py`` exposes them
as fixtures). ``make_app(shape)`` hands over its response in one of these ways:

- ``list``: ``start_response`` then a list body;
- ``eager_generator``: ``start_response`` then a generator body;
- ``lazy_generator``: a generator that calls ``start_response`` itself, before
  its first chunk (as Flask's streaming responses and many frameworks do);
- ``write``: legacy ``write()`` for the first chunk, an iterable for the rest;
- ``closing``: an iterable object whose ``close()`` calls are counted;
- ``file_wrapper``: ``environ["wsgi.file_wrapper"]`` over a file whose
  ``close()`` calls are counted (one chunk per ``read()``).

Each calls ``during(environ)`` before ``start_response`` (the lazy generator:
inside the generator), where the tests register callbacks; the generator shapes
call ``later()`` in their body's second step, after the first chunk went out. Given a
:class:`Counter`, every shape but ``list`` (a list has no ``close()``) counts
its body and that body's ``close()`` calls there.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Iterable, Iterator
from wsgiref.util import FileWrapper
from wsgiref.validate import validator

from webob import Request

from deferware import DeferMiddleware

BODY = (b"hello", b" ", b"world")
TEXT_HEADERS = (("Content-Type", "text/plain; charset=UTF-8"),)
SHAPES = ("list", "eager_generator", "lazy_generator", "write", "closing", "file_wrapper")
#: The shapes whose body has a close() to count.
COUNTED_SHAPES = tuple(shape for shape in SHAPES if shape != "list")
#: Where ``make_app(shape, fault=...)`` fails, with the message of its AppFailure.
FAULTS = {
    "before_start_response": "the application failed before start_response",
    "after_start_response": "the application failed after start_response",
    "streaming": "the application failed while streaming",  # on the second chunk
}
#: The ways an application fails before it has a body, as (shape, fault), by name.
EARLY_FAILURES = {
    "before_start_response": ("list", "before_start_response"),
    "after_start_response": ("list", "after_start_response"),
    "lazy_before_start_response": ("lazy_generator", "before_start_response"),
}

App = Callable[..., Iterable[bytes]]


class AppFailure(Exception):
    """Raised by an application told to fail (``make_app(fault=...)``)."""


@dataclasses.dataclass
class Counter:
    """What happened to an application's bodies and close callbacks."""

    created: int = 0  #: bodies (or files) created
    closes: int = 0  #: close() calls those received
    close_callbacks: list[str] = dataclasses.field(default_factory=list)

    def closer(self, name: str) -> Callable[[], None]:
        """A close callback that records *name* in ``close_callbacks``."""

        def close_callback() -> None:
            self.close_callbacks.append(name)

        return close_callback


class Counted:
    """Wraps any body iterable (lazily: iterating it starts a lazy app) and counts ``close()``:
    not a generator, whose ``finally`` would not run if it is closed unstarted."""

    def __init__(self, iterable: Iterable[bytes], counter: Counter | None = None) -> None:
        self.iterable = iterable
        self.counter = Counter() if counter is None else counter
        self.counter.created += 1

    @property
    def close_calls(self) -> int:
        return self.counter.closes

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.iterable)

    def close(self) -> None:
        self.counter.closes += 1
        close = getattr(self.iterable, "close", None)
        if close is not None:
            close()


class CountingFile(Counted):
    """A file for ``wsgi.file_wrapper`` over an iterator: ``read()`` gives its next chunk, then ``b""``."""

    def read(self, size: int = -1) -> bytes:
        return next(iter(self.iterable), b"")  # an iterator's iter() is the iterator itself


class MarkerFileWrapper:
    """Stands in for a server's ``wsgi.file_wrapper`` so a test can spot it."""

    instances: ClassVar[list[MarkerFileWrapper]] = []

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.instances.append(self)
        self.filelike = filelike
        self.blksize = blksize
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.filelike.read(self.blksize):
            yield chunk

    def close(self) -> None:
        self.closed = True
        self.filelike.close()


class SampleApp:
    """``make_app(shape, ...)``: a WSGI application of *shape* (see the module docstring).

    *counter* counts its bodies' ``close()`` calls; *fault* (a key of ``FAULTS``)
    makes it raise *error*, or an AppFailure, there; a list cannot fail while streaming.
    """

    def __init__(
        self,
        shape: str,
        *,
        during: Callable[[dict[str, Any]], object] = lambda environ: None,
        later: Callable[[], object] = lambda: None,
        counter: Counter | None = None,
        fault: str | None = None,
        error: BaseException | None = None,
        status: str = "200 OK",
        headers: Iterable[tuple[str, str]] = TEXT_HEADERS,
        body: Iterable[bytes] = BODY,
    ) -> None:
        if shape not in SHAPES or fault not in (None, *FAULTS):
            raise ValueError(f"unknown shape {shape!r} or fault {fault!r}")
        if shape == "list" and (counter is not None or fault == "streaming"):
            raise ValueError("a list body can neither be counted nor fail: use the 'closing' shape")
        self.shape, self.during, self.counter, self.fault, self.error = shape, during, counter, fault, error
        self.later = later
        self.status, self.headers = status, list(headers)
        self.chunks = list(body)
        self.fail_at = 1 if fault == "streaming" else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        chunks, fail_at = self.chunks, self.fail_at
        if self.shape == "lazy_generator":
            return self.count(self.lazy(environ, start_response))
        write = self.begin(environ, start_response)
        if self.shape == "list":
            return list(chunks)
        if self.shape == "eager_generator":
            return self.count(self.stream(chunks, fail_at))
        if self.shape == "closing":
            return Counted(list(chunks) if fail_at is None else self.stream(chunks, fail_at), self.counter)
        if self.shape == "file_wrapper":
            file = CountingFile(self.stream(chunks, fail_at), self.counter)
            return environ["wsgi.file_wrapper"](file, 8192)  # type: ignore[no-any-return]
        if chunks:
            write(chunks[0])
        # The first chunk went to write(): a streaming fault hits the rest's first item.
        return self.count(list(chunks[1:]) if fail_at is None else self.stream(chunks[1:], fail_at - 1))

    def fail(self, moment: str) -> None:
        if self.fault == moment:
            raise AppFailure(FAULTS[moment]) if self.error is None else self.error

    def begin(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Callable[[bytes], object]:
        self.during(environ)
        self.fail("before_start_response")
        write = start_response(self.status, list(self.headers))
        self.fail("after_start_response")
        return write  # type: ignore[no-any-return]

    def stream(self, chunks: list[bytes], fail_at: int | None) -> Iterator[bytes]:
        for index, chunk in enumerate(chunks):
            if index == fail_at:
                self.fail("streaming")
            if index == 1:
                self.later()
            yield chunk

    def lazy(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        self.begin(environ, start_response)
        yield from self.stream(self.chunks, self.fail_at)

    def count(self, iterable: Iterable[bytes]) -> Iterable[bytes]:
        return iterable if self.counter is None else Counted(iterable, self.counter)


make_app = SampleApp


def counted(app: App) -> App:
    """Wrap *app* so that its body is a :class:`Counted`; the instance is ``wrapper.body``."""

    def wrapper(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        wrapper.body = Counted(app(environ, start_response))  # type: ignore[attr-defined]
        return wrapper.body  # type: ignore[attr-defined,no-any-return]

    return wrapper


def wrap(app: App, **options: Any) -> App:
    """``DeferMiddleware(app)`` with PEP 3333 checked on both sides by wsgiref's validator."""
    return validator(DeferMiddleware(validator(app), **options))


def make_environ(path: str = "/", method: str = "GET", **extra: Any) -> dict[str, Any]:
    """A complete WSGI environ, as a server would pass it, with wsgiref's ``wsgi.file_wrapper``."""
    environ = Request.blank(path, method=method).environ
    environ["wsgi.file_wrapper"] = FileWrapper
    environ.update(extra)
    return environ


@dataclasses.dataclass
class Sent:
    """What the driver (the "server") received."""

    status: str | None = None
    headers: list[tuple[str, str]] | None = None
    chunks: list[bytes] = dataclasses.field(default_factory=list)
    iterable: Any = None
    start_response_calls: int = 0
    headers_sent: bool = False
    log: list[Any] | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: str) -> list[str]:
        assert self.headers is not None
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def receive(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        if self.log is not None:
            self.log.append(("server got", chunk))


def start(app: App, environ: dict[str, Any] | None = None, *, log: list[Any] | None = None) -> Sent:
    """Act as a WSGI server that called *app* and has not iterated its body (``Sent.iterable``).

    ``("server start_response", status)`` goes to *log*. Headers count as sent with
    the first ``write()`` or non-empty chunk; after that, a ``start_response`` with
    ``exc_info`` re-raises, as PEP 3333 asks.
    """
    sent = Sent(log=log)

    def write(data: bytes) -> None:
        sent.headers_sent = True
        sent.receive(data)

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        sent.start_response_calls += 1
        if exc_info is not None:
            if sent.headers_sent:
                raise exc_info[1].with_traceback(exc_info[2])
        elif sent.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        sent.status = status
        sent.headers = headers
        if log is not None:
            log.append(("server start_response", status))
        return write

    sent.iterable = app(make_environ() if environ is None else environ, start_response)
    return sent


def drive(
    app: App,
    environ: dict[str, Any] | None = None,
    *,
    log: list[Any] | None = None,
    stop_after: int | None = None,
    close_times: int = 1,
) -> Sent:
    """Act as a WSGI server: :func:`start`, iterate the body, close it *close_times* times.

    ``Sent.chunks`` are ``write()`` data and iterated items in the order received
    (``("server got", chunk)`` goes to *log*); *stop_after* stops iterating once
    that many arrived (a client gone away).
    """
    sent = start(app, environ, log=log)
    try:
        for chunk in sent.iterable:
            if chunk:
                sent.headers_sent = True
            sent.receive(chunk)
            if stop_after is not None and len(sent.chunks) >= stop_after:
                break
    finally:
        for _ in range(close_times if hasattr(sent.iterable, "close") else 0):
            sent.iterable.close()
    return sent
