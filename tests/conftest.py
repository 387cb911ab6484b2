"""Sample WSGI applications and a server-like driver, shared by the behaviour tests.

The app shapes cover the ways a WSGI application can hand over its response:

- ``list``: ``start_response`` then a list body;
- ``eager_generator``: ``start_response`` then a generator body;
- ``lazy_generator``: a generator that calls ``start_response`` itself, before
  its first chunk (as Flask's streaming responses and many frameworks do);
- ``write``: legacy ``write()`` for the first chunk, a list for the rest;
- ``closing``: an iterable object with a ``close()`` that counts its calls.

Every shape calls ``during(environ)`` while the application's own code runs (for
the lazy generator: inside the generator, before ``start_response``), which is
where the tests register callbacks.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any, Callable, Iterable, Iterator
from wsgiref.util import FileWrapper
from wsgiref.validate import validator

import pytest
from webob import Request

from deferware import DeferMiddleware

BODY = (b"hello", b" ", b"world")
TEXT_HEADERS = [("Content-Type", "text/plain; charset=UTF-8")]
SHAPES = ["list", "eager_generator", "lazy_generator", "write", "closing"]


class CountingIterable:
    """A body iterable that counts how often ``close()`` was called on it."""

    def __init__(self, chunks: Iterable[bytes] = BODY) -> None:
        self.chunks = list(chunks)
        self.close_calls = 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.close_calls += 1


class Counted:
    """Wraps any body iterable (lazily: iterating it starts a lazy app) and counts ``close()``."""

    def __init__(self, iterable: Iterable[bytes]) -> None:
        self.iterable = iterable
        self.close_calls = 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.iterable)

    def close(self) -> None:
        self.close_calls += 1
        close = getattr(self.iterable, "close", None)
        if close is not None:
            close()


def _nothing(environ: dict[str, Any]) -> None:
    return None


def make_app(
    shape: str,
    *,
    during: Callable[[dict[str, Any]], object] = _nothing,
    status: str = "200 OK",
    headers: list[tuple[str, str]] | None = None,
    body: Iterable[bytes] = BODY,
) -> Callable[..., Iterable[bytes]]:
    """A WSGI application of the given shape (see the module docstring)."""
    chunks = list(body)

    def fresh_headers() -> list[tuple[str, str]]:
        return list(TEXT_HEADERS if headers is None else headers)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if shape == "lazy_generator":
            return lazy(environ, start_response)
        write = start_response(status, fresh_headers())
        during(environ)
        if shape == "list":
            return list(chunks)
        if shape == "eager_generator":
            return iter_chunks()
        if shape == "write":
            if chunks:
                write(chunks[0])
            return list(chunks[1:])
        if shape == "closing":
            app.iterable = CountingIterable(chunks)  # type: ignore[attr-defined]
            return app.iterable  # type: ignore[attr-defined]
        raise AssertionError(f"unknown shape {shape!r}")

    def iter_chunks() -> Iterator[bytes]:
        yield from chunks

    def lazy(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        during(environ)
        start_response(status, fresh_headers())
        yield from chunks

    return app


def counted(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Wrap *app* so that its body is a :class:`Counted`; the instance is ``wrapper.body``."""

    def wrapper(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        wrapper.body = Counted(app(environ, start_response))  # type: ignore[attr-defined]
        return wrapper.body  # type: ignore[attr-defined]

    return wrapper


def file_wrapper_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](io.BytesIO(b"file contents"), 4)


def make_environ(path: str = "/", method: str = "GET", **extra: Any) -> dict[str, Any]:
    environ = Request.blank(path, method=method).environ
    environ["wsgi.file_wrapper"] = FileWrapper
    environ.update(extra)
    return environ


def wrap(app: Callable[..., Iterable[bytes]], **options: Any) -> Callable[..., Iterable[bytes]]:
    """``DeferMiddleware(app)`` with PEP 3333 checked on both sides by wsgiref's validator."""
    return validator(DeferMiddleware(validator(app), **options))


@dataclasses.dataclass
class Sent:
    """What the driver (the "server") received."""

    status: str | None = None
    headers: list[tuple[str, str]] | None = None
    chunks: list[bytes] = dataclasses.field(default_factory=list)
    iterable: Any = None
    start_response_calls: int = 0
    headers_sent: bool = False

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: str) -> list[str]:
        assert self.headers is not None
        return [value for key, value in self.headers if key.lower() == name.lower()]


def drive(
    app: Callable[..., Iterable[bytes]],
    environ: dict[str, Any] | None = None,
    *,
    log: list[Any] | None = None,
    stop_after: int | None = None,
    close: bool = True,
) -> Sent:
    """Act as a WSGI server: call *app*, iterate its body, close it.

    Records the status, headers and chunks (``write()`` data and iterated items
    in the order received; ``("server got", chunk)`` goes to *log*). Headers
    count as sent with the first non-empty chunk, after which a
    ``start_response`` with ``exc_info`` re-raises, as PEP 3333 asks.
    *stop_after* stops iterating after that many chunks (a client gone away).
    """
    sent = Sent()

    def write(data: bytes) -> None:
        sent.headers_sent = True
        sent.chunks.append(data)
        if log is not None:
            log.append(("server got", data))

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

    iterable = app(make_environ() if environ is None else environ, start_response)
    sent.iterable = iterable
    try:
        for chunk in iterable:
            if chunk:
                sent.headers_sent = True
            sent.chunks.append(chunk)
            if log is not None:
                log.append(("server got", chunk))
            if stop_after is not None and len(sent.chunks) >= stop_after:
                break
    finally:
        if close and hasattr(iterable, "close"):
            iterable.close()
    return sent


@pytest.fixture(params=SHAPES)
def shape(request: pytest.FixtureRequest) -> str:
    """Each app shape in turn."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(name="make_app")
def make_app_fixture() -> Callable[..., Callable[..., Iterable[bytes]]]:
    return make_app


@pytest.fixture(name="counted")
def counted_fixture() -> Callable[..., Callable[..., Iterable[bytes]]]:
    return counted


@pytest.fixture(name="drive")
def drive_fixture() -> Callable[..., Sent]:
    return drive


@pytest.fixture(name="wrap")
def wrap_fixture() -> Callable[..., Callable[..., Iterable[bytes]]]:
    return wrap


@pytest.fixture(name="make_environ")
def make_environ_fixture() -> Callable[..., dict[str, Any]]:
    return make_environ


@pytest.fixture(name="file_wrapper_app")
def file_wrapper_app_fixture() -> Callable[..., Iterable[bytes]]:
    return file_wrapper_app


@pytest.fixture
def raising_app() -> Callable[..., Callable[..., Iterable[bytes]]]:
    """Factory: an app that raises *error* at *when* (before/after start_response,
    or in a lazy generator before start_response), after calling ``during``."""

    def factory(
        when: str, error: BaseException, during: Callable[[dict[str, Any]], object] = _nothing
    ) -> Callable[..., Iterable[bytes]]:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            during(environ)
            if when == "before_start_response":
                raise error
            if when == "lazy_before_start_response":
                return lazy()
            start_response("200 OK", list(TEXT_HEADERS))
            if when == "after_start_response":
                raise error
            raise AssertionError(f"unknown moment {when!r}")

        def lazy() -> Iterator[bytes]:
            raise error
            yield b""  # pragma: no cover - makes this a generator

        return app

    return factory
