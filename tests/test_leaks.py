"""Nothing outlives its request: 100,000 requests through ``DeferMiddleware``.

The requests mix the paths a server sees (nothing registered, header and cookie
callbacks, a failing callback under ``on_callback_error="log"``, close callbacks
with a lazy generator and a replaced response, a ``write()`` user), driven
directly over WSGI as a server would (call, iterate, ``close()``).

* Memory stays flat: traced memory after a warm-up and at the end differ by
  less than a small tolerance.
* On sampled requests, weak references to the callback objects, the
  ``webob.Response`` the callbacks saw and the application's iterable are dead
  as soon as ``close()`` returned and the server dropped the iterable, even
  though the environ (which a server may keep) is still alive.
* At the end no registry object is left anywhere, and none is bound in the
  context.
"""

from __future__ import annotations

import gc
import io
import logging
import sys
import time
import tracemalloc
import weakref
from typing import Any, Callable, Iterable, Iterator

import pytest
from webob import Response

from deferware import ENVIRON_KEY, DeferMiddleware, ResponseAlreadyStarted, after_this_request, call_on_close
from deferware.registry import Registry, current_registry

REQUESTS = 100_000
WARM_UP = 10_000
SAMPLE_EVERY = 97
TOLERANCE = 256 * 1024  # bytes; a leak of one small object per request is ~5 MB
KINDS = ("idle", "callbacks", "failing_logged", "close_lazy_replaced", "write")


class HeaderCallback:
    """An ``after_this_request`` callback that can be weakly referenced; it
    keeps only a weak reference to the response it saw."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.response_ref: weakref.ref[Response] | None = None

    def __call__(self, response: Response) -> None:
        self.response_ref = weakref.ref(response)
        response.headers["X-Value"] = self.value
        response.set_cookie("value", self.value)


class FailingCallback:
    def __call__(self, response: Response) -> None:
        response.headers["X-Rolled-Back"] = "yes"
        raise RuntimeError("failing on purpose")


class Replacing:
    def __call__(self, response: Response) -> Response:
        return Response(body=b"replaced", content_type="text/plain")


class CloseCallback:
    def __init__(self, tally: list[int]) -> None:
        self.tally = tally

    def __call__(self) -> None:
        self.tally[0] += 1


class Body:
    """The application's iterable, closable and weakly referenceable."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        pass


class Tracker:
    """Collects weak references for sampled requests and the close tally."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref[Any]] = []
        self.sampling = False
        self.closes = [0]

    def keep(self, obj: Any) -> Any:
        if self.sampling:
            self.refs.append(weakref.ref(obj))
        return obj


def make_app(kind: str, tracker: Tracker) -> Callable[..., Iterable[bytes]]:
    headers = [("Content-Type", "text/plain")]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if kind == "idle":
            start_response("200 OK", list(headers))
            return tracker.keep(Body([b"idle"]))
        if kind in ("callbacks", "failing_logged"):
            after_this_request(tracker.keep(HeaderCallback("context")))
            after_this_request(tracker.keep(HeaderCallback("environ")), environ=environ)
            if kind == "failing_logged":
                after_this_request(tracker.keep(FailingCallback()))
            start_response("200 OK", list(headers))
            return tracker.keep(Body([b"a", b"b"]))
        if kind == "close_lazy_replaced":

            def lazy() -> Iterator[bytes]:
                call_on_close(tracker.keep(CloseCallback(tracker.closes)))
                after_this_request(tracker.keep(HeaderCallback("lazy")))
                after_this_request(tracker.keep(Replacing()), environ=environ)
                start_response("200 OK", list(headers))
                yield b"lazy"

            return lazy()
        # write()
        call_on_close(tracker.keep(CloseCallback(tracker.closes)), environ=environ)
        after_this_request(tracker.keep(HeaderCallback("write")))
        write = start_response("200 OK", list(headers))
        write(b"written")
        return tracker.keep(Body([b"rest"]))

    return app


def serve(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> int:
    """Call, iterate, close, as a server does; return the bytes sent."""
    sent = 0

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return lambda data: None

    result = app(environ, start_response)
    try:
        for chunk in result:
            sent += len(chunk)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return sent


BASE_ENVIRON = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


class CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def registries_alive() -> int:
    # type(), not isinstance(): isinstance() asks obj.__class__, which makes lazy
    # objects of other libraries (Django's settings-backed storages) set up.
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), Registry))


def test_no_request_state_outlives_its_request() -> None:
    gc.collect()
    # Registries other tests left alive (held by a traceback, a fixture) are not ours to count.
    registries_before = registries_alive()
    tracker = Tracker()
    apps = [DeferMiddleware(make_app(kind, tracker)) for kind in KINDS]
    apps[KINDS.index("failing_logged")] = DeferMiddleware(
        make_app("failing_logged", tracker), on_callback_error="log"
    )
    logger = logging.getLogger("deferware")
    handler = CountingHandler()
    saved = (logger.handlers[:], logger.propagate)
    logger.handlers[:] = [handler]
    logger.propagate = False  # 20,000 logged tracebacks must not pile up in pytest's capture
    sampled = 0
    started = time.perf_counter()
    tracemalloc.start()
    try:
        for number in range(REQUESTS):
            if number == WARM_UP:
                gc.collect()
                baseline = tracemalloc.get_traced_memory()[0]
            tracker.sampling = number % SAMPLE_EVERY == 0
            environ = dict(BASE_ENVIRON, **{"wsgi.input": io.BytesIO()})
            assert serve(apps[number % len(apps)], environ) > 0
            if tracker.sampling:
                sampled += 1
                assert isinstance(environ[ENVIRON_KEY], Registry)  # the environ outlives the request...
                alive = [ref() for ref in tracker.refs if ref() is not None]
                # ...but nothing the request registered or built does.
                assert alive == [], f"request {number} ({KINDS[number % len(KINDS)]}) left {alive!r}"
                tracker.refs.clear()
            del environ
        gc.collect()
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        logger.handlers[:], logger.propagate = saved
    seconds = time.perf_counter() - started
    growth = end - baseline
    per_kind = REQUESTS // len(KINDS)
    print(
        f"\n[leaks] requests={REQUESTS} sampled={sampled} memory_growth={growth} bytes "
        f"(tolerance {TOLERANCE}) logged={handler.count} close_callbacks={tracker.closes[0]} "
        f"seconds={seconds:.1f}"
    )
    assert growth < TOLERANCE, f"memory grew by {growth} bytes over {REQUESTS - WARM_UP} requests"
    assert handler.count == per_kind, "every failing callback is logged once"
    assert tracker.closes[0] == 2 * per_kind, "every close callback ran once"
    gc.collect()
    assert registries_alive() == registries_before, "a deferware registry outlived its request"
    assert current_registry.get(None) is None, "a registry is still bound in the context"


class Refused:
    """A late registration that closes over the environ (which holds the registry)."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    def __call__(self, *args: Any) -> None:
        raise AssertionError("a refused registration ran")


def _late_from_a_later_chunk(environ: dict[str, Any], refs: list[weakref.ref[Any]]) -> Any:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        call_on_close(lambda: None)  # the response goes out hooked: the environ keeps its registry
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body(environ)

    def body(environ: dict[str, Any]) -> Iterator[bytes]:
        yield b"first"
        late = Refused(environ)
        try:
            after_this_request(late, environ=environ)
        except ResponseAlreadyStarted:
            refs.append(weakref.ref(late))  # refused, as it must be
        yield b"second"

    return DeferMiddleware(app)


def _late_after_the_response_closed(environ: dict[str, Any], refs: list[weakref.ref[Any]]) -> Any:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        call_on_close(lambda: None)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"first", b"second"]

    def serve_then_register_late(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        body = DeferMiddleware(app)(environ, start_response)
        chunks = list(body)
        body.close()  # type: ignore[attr-defined]
        late = Refused(environ)
        try:
            call_on_close(late, environ=environ)
        except ResponseAlreadyStarted:
            refs.append(weakref.ref(late))  # refused, as it must be
        del late
        return chunks

    return serve_then_register_late


def _late_after_the_application_raised(environ: dict[str, Any], refs: list[weakref.ref[Any]]) -> Any:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raise LookupError("the application failed")

    def serve_then_register_late(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            DeferMiddleware(app)(environ, start_response)
        except LookupError:
            late = Refused(environ)
            for register in (after_this_request, call_on_close):
                try:
                    register(late, environ=environ)
                except ResponseAlreadyStarted:
                    refs.append(weakref.ref(late))  # refused, as it must be
            del late
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"failed"]

    return serve_then_register_late


@pytest.mark.parametrize(
    ("make", "refusals"),
    [
        (_late_from_a_later_chunk, 1),
        (_late_after_the_response_closed, 1),
        (_late_after_the_application_raised, 2),
    ],
)
def test_a_refused_registration_is_not_kept(make: Callable[..., Any], refusals: int) -> None:
    # The environ (which a server may keep) holds the registry; a refused
    # function kept in its lists would hold the environ: a cycle per request.
    refs: list[weakref.ref[Any]] = []
    environ = dict(BASE_ENVIRON, **{"wsgi.input": io.BytesIO()})
    gc.disable()  # only reference counting may free it
    try:
        assert serve(make(environ, refs), environ) > 0
        assert isinstance(environ[ENVIRON_KEY], Registry)
        assert len(refs) == refusals, "a late registration was not refused"
        assert [ref() for ref in refs] == [None] * refusals, "a refused registration outlived its refusal"
    finally:
        gc.enable()
