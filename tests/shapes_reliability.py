"""Sample WSGI application shapes and a server-like driver for the reliability tests.

Self-contained on purpose (the reliability files do not depend on ``conftest.py``).
Every shape counts how often the iterable it returns is closed, so a test can
check PEP 3333's "``close()`` runs exactly once" on every path:

* ``list``: ``start_response`` then a list-like iterable with ``close()``;
* ``eager_generator``: ``start_response`` then a generator;
* ``lazy_generator``: a generator that calls ``start_response`` when first pulled;
* ``write``: passes the first chunk to ``write()``, returns the rest;
* ``file_wrapper``: returns ``environ["wsgi.file_wrapper"](file)``.

A shape may be told to fail at one point (``fault``): ``"before_start"`` (raise
before ``start_response``), ``"after_start"`` (raise after ``start_response``,
before the body exists) or ``"streaming"`` (raise after the first chunk).
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator
from wsgiref.util import FileWrapper, setup_testing_defaults

SHAPES = ("list", "eager_generator", "lazy_generator", "write", "file_wrapper")
CHUNKS = (b"one", b"two", b"three")
STATUS = "200 OK"
HEADERS = (("Content-Type", "text/plain; charset=utf-8"), ("X-App", "shape"))


class AppFailure(Exception):
    """Raised by a shape told to fail."""


@dataclass
class Counter:
    """What happened to one request's iterable and close callbacks."""

    created: int = 0  #: iterables (or files) the application created
    closes: int = 0  #: close() calls those received
    close_callbacks: list[str] = field(default_factory=list)

    def closer(self, name: str) -> Callable[[], None]:
        def close_callback() -> None:
            self.close_callbacks.append(name)

        return close_callback


class CountingIterable:
    """A list-like body whose ``close()`` is counted; may raise after one chunk."""

    def __init__(self, chunks: Iterable[bytes], counter: Counter, fail_after: int | None = None) -> None:
        self.chunks = list(chunks)
        self.counter = counter
        self.fail_after = fail_after
        counter.created += 1

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_after:
                raise AppFailure("the application failed while streaming")
            yield chunk

    def close(self) -> None:
        self.counter.closes += 1


class CountingGenerator:
    """Wraps a generator to count ``close()``: an unstarted generator runs no
    ``finally``, so counting inside it would miss exactly the early-close paths."""

    def __init__(self, generator: Iterator[bytes], counter: Counter) -> None:
        self.generator = generator
        self.counter = counter
        counter.created += 1

    def __iter__(self) -> Iterator[bytes]:
        return self.generator

    def close(self) -> None:
        self.counter.closes += 1
        self.generator.close()  # type: ignore[attr-defined]


class CountingFile:
    """A file-like object for ``wsgi.file_wrapper``: ``read()`` returns one chunk
    per call; its ``close()`` (called by the wrapper's ``close()``) is counted."""

    def __init__(self, chunks: Iterable[bytes], counter: Counter, fail_after: int | None = None) -> None:
        self.chunks = list(chunks)
        self.index = 0
        self.counter = counter
        self.fail_after = fail_after
        counter.created += 1

    def read(self, size: int = -1) -> bytes:
        if self.index == self.fail_after:
            raise AppFailure("the application failed while streaming")
        if self.index >= len(self.chunks):
            return b""
        self.index += 1
        return self.chunks[self.index - 1]

    def close(self) -> None:
        self.counter.closes += 1


def make_app(
    shape: str,
    counter: Counter,
    *,
    fault: str | None = None,
    on_request: Callable[[dict[str, Any]], object] | None = None,
    chunks: Iterable[bytes] = CHUNKS,
    status: str = STATUS,
    headers: Iterable[tuple[str, str]] = HEADERS,
) -> Callable[..., Any]:
    """A WSGI application of *shape*; ``on_request(environ)`` runs where the
    application would register callbacks (inside the generator, for a lazy one)."""
    chunks = list(chunks)
    headers = list(headers)
    streaming = 1 if fault == "streaming" else None

    def begin(environ: dict[str, Any], start_response: Callable[..., Any]) -> Callable[[bytes], object]:
        if on_request is not None:
            on_request(environ)
        if fault == "before_start":
            raise AppFailure("the application failed before start_response")
        write = start_response(status, list(headers))
        if fault == "after_start":
            raise AppFailure("the application failed after start_response")
        return write

    def generate(chunks: list[bytes]) -> Iterator[bytes]:
        for index, chunk in enumerate(chunks):
            if index == streaming:
                raise AppFailure("the application failed while streaming")
            yield chunk

    if shape == "list":

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            begin(environ, start_response)
            return CountingIterable(chunks, counter, streaming)

    elif shape == "eager_generator":

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            begin(environ, start_response)
            return CountingGenerator(generate(chunks), counter)

    elif shape == "lazy_generator":

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            def lazy() -> Iterator[bytes]:
                begin(environ, start_response)
                yield from generate(chunks)

            return CountingGenerator(lazy(), counter)

    elif shape == "write":

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            write = begin(environ, start_response)
            write(chunks[0])
            # The first chunk went to write(): a streaming fault hits the rest's first item.
            return CountingIterable(chunks[1:], counter, 0 if streaming else None)

    elif shape == "file_wrapper":

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            begin(environ, start_response)
            return environ["wsgi.file_wrapper"](CountingFile(chunks, counter, streaming), 8192)

    else:  # pragma: no cover - a typo in a test table
        raise ValueError(f"unknown shape {shape!r}")
    return app


def make_environ(**extra: Any) -> dict[str, Any]:
    """A complete WSGI environ, as a server would pass it."""
    environ: dict[str, Any] = {
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.errors": sys.stderr,
        "QUERY_STRING": "",
    }
    setup_testing_defaults(environ)
    environ["wsgi.input"] = io.BytesIO()
    environ.update(extra)
    return environ


@dataclass
class Served:
    """What the server sent (or would have sent)."""

    status: str | None
    headers: list[tuple[str, str]] | None
    body: bytes
    start_response_calls: int


def serve(
    app: Callable[..., Any],
    environ: dict[str, Any] | None = None,
    *,
    stop_after: int | None = None,
    close_times: int = 1,
) -> Served:
    """Drive *app* as a server would: call, iterate (stopping after *stop_after*
    chunks, as when the client went away), then ``close()`` *close_times* times.

    The body is what ``write()`` got plus the chunks iterated, in order.
    """
    if environ is None:
        environ = make_environ()
    sent: list[bytes] = []
    calls: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        calls.append((status, headers))
        return sent.append

    result = app(environ, start_response)
    try:
        for index, chunk in enumerate(result, 1):
            sent.append(chunk)
            if stop_after is not None and index >= stop_after:
                break
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            for _ in range(close_times):
                close()
    status, headers = calls[-1] if calls else (None, None)
    return Served(status, headers, b"".join(sent), len(calls))
