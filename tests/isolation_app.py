"""The application real servers run in ``test_servers.py`` and ``test_fault_matrix.py``.

Loaded through ``servers:application`` from the ``tests`` directory, by every
real server ``servers.py`` starts as a subprocess (waitress, gunicorn with
``gthread`` and ``gevent`` workers, cheroot, uWSGI).

``application``: every request carries its id in the query string (``?id=...``).
After short random pauses (``time.sleep``, which the gevent worker monkey-patches
into a cooperative sleep, so requests interleave there too) it registers
callbacks that write that id into the response: a header from the context form,
a cookie through ``environ=``, a header from a worker thread through
``environ=``, and a header from a callback registered by a running callback.
Every second request starts lazily (``start_response`` inside its generator). A
response carrying any other request's id is a leak.

``streaming``: a long, slow lazy response for the client-disconnect test. It
appends one line to the file named by ``DEFERWARE_EVENTS`` when its iterable is
closed and one when its close callback runs, so the test can count both.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs

from deferware import DeferMiddleware, after_this_request, call_on_close


def _pause() -> None:
    time.sleep(random.random() * 0.002)


def _register(environ: dict[str, Any], request_id: str) -> None:
    _pause()

    @after_this_request
    def context_header(response: Any) -> None:
        response.headers["X-Req-Ctx"] = request_id

        # Registered while callbacks run, through the context: it must land in
        # this request's registry, not in whichever request runs next.
        @after_this_request
        def nested_header(response: Any) -> None:
            response.headers["X-Req-Nested"] = request_id

    _pause()

    def environ_cookie(response: Any) -> None:
        response.set_cookie("rid", request_id)

    after_this_request(environ_cookie, environ=environ)

    def thread_header(response: Any) -> None:
        response.headers["X-Req-Thread"] = request_id

    def from_thread() -> None:
        _pause()
        after_this_request(thread_header, environ=environ)

    worker = threading.Thread(target=from_thread)
    worker.start()
    worker.join(10)


def plain_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    request_id = parse_qs(environ.get("QUERY_STRING", "")).get("id", ["none"])[0]
    body = request_id.encode("ascii")
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    if sum(map(ord, request_id)) % 2:
        _register(environ, request_id)
        start_response("200 OK", headers)
        return [body]

    def lazy() -> Iterator[bytes]:
        _register(environ, request_id)
        start_response("200 OK", headers)
        yield body

    return lazy()


application = DeferMiddleware(plain_app)


def _event(line: str) -> None:
    with open(os.environ["DEFERWARE_EVENTS"], "a", encoding="ascii") as events:
        events.write(line + "\n")


class _SlowBody:
    """Up to ~10 s of 16 KiB chunks; records its own ``close()`` calls."""

    def __init__(self) -> None:
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for self.sent in range(1, 1001):
            time.sleep(0.01)
            yield b"x" * 16384

    def close(self) -> None:
        _event(f"iterable-closed after {self.sent} chunks")


def streaming_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("QUERY_STRING") == "id=ready":  # the readiness probe: not counted
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ready"]
    after_this_request(lambda response: response.headers.__setitem__("X-Streaming", "yes"))
    call_on_close(lambda: _event("close-callback"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _SlowBody()


streaming = DeferMiddleware(streaming_app)
