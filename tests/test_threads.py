"""Registering callbacks from worker threads (``concurrent.futures``).

A thread does not inherit the request's context: code there finds the request
only through ``environ=`` or when it runs in a copy of the request's context
(``contextvars.copy_context().run``); otherwise it gets ``NoActiveRequest``.
"""

from __future__ import annotations

import contextvars
import importlib
import sys
import threading
import wsgiref.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from webtest import TestApp

from deferware import (
    DeferMiddleware,
    NoActiveRequest,
    ResponseAlreadyStarted,
    after_this_request,
    call_on_close,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
worker_threads = importlib.import_module("worker_threads")


@pytest.fixture
def executor():
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


def header_setter(name, value):
    def set_header(response):
        response.headers[name] = value

    return set_header


def make_app(work):
    """A WSGI app that runs ``work(environ)`` to completion before answering."""

    def app(environ, start_response):
        body = work(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    return DeferMiddleware(app)


def test_worker_registers_with_environ(executor):
    threads = []

    def in_worker(environ):
        threads.append(threading.get_ident())
        after_this_request(header_setter("X-Worker", "environ"), environ=environ)
        return b"ok"

    app = make_app(lambda environ: executor.submit(in_worker, environ).result())
    response = TestApp(app).get("/")
    assert response.headers["X-Worker"] == "environ"
    assert threads != [threading.get_ident()]


def test_worker_registers_through_a_copied_context(executor):
    def in_worker():
        after_this_request(header_setter("X-Worker", "context"))
        return b"ok"

    app = make_app(lambda environ: executor.submit(contextvars.copy_context().run, in_worker).result())
    response = TestApp(app).get("/")
    assert response.headers["X-Worker"] == "context"


def test_worker_without_environ_or_context_gets_no_active_request(executor):
    errors = []

    def in_worker():
        after_this_request(header_setter("X-Worker", "never"))

    def work(environ):
        with pytest.raises(NoActiveRequest, match=r"environ=request\.environ") as caught:
            executor.submit(in_worker).result()
        errors.append(caught.value)
        return b"ok"

    response = TestApp(make_app(work)).get("/")
    assert "X-Worker" not in response.headers
    assert len(errors) == 1


def test_worker_call_on_close_with_environ_runs_after_the_response(executor):
    events = []

    def in_worker(environ):
        call_on_close(lambda: events.append("closed"), environ=environ)
        return b"ok"

    app = make_app(lambda environ: executor.submit(in_worker, environ).result())
    environ = {}
    wsgiref.util.setup_testing_defaults(environ)
    body = app(environ, lambda status, headers, exc_info=None: None)
    assert list(body) == [b"ok"]
    assert events == []
    body.close()
    assert events == ["closed"]


def test_worker_registering_after_the_response_left_is_refused(executor):
    release = threading.Event()
    outcome = []

    def late_worker(environ):
        release.wait(5)
        try:
            after_this_request(header_setter("X-Late", "yes"), environ=environ)
        except ResponseAlreadyStarted as exc:
            outcome.append(exc)

    def work(environ):
        executor.submit(late_worker, environ)  # not waited for: a bug in the app
        return b"ok"

    response = TestApp(make_app(work)).get("/")
    release.set()
    executor.shutdown(wait=True)
    assert "X-Late" not in response.headers
    [error] = outcome
    assert "came too late" in str(error)


def test_concurrent_requests_get_their_own_workers_callbacks(executor):
    def in_worker(environ):
        after_this_request(header_setter("X-Request", environ["QUERY_STRING"]), environ=environ)
        return environ["QUERY_STRING"].encode()

    app = TestApp(make_app(lambda environ: executor.submit(in_worker, environ).result()))
    with ThreadPoolExecutor(max_workers=8) as clients:
        responses = list(clients.map(lambda n: app.get("/", params={"n": str(n)}), range(40)))
    for n, response in enumerate(responses):
        assert response.text == f"n={n}"
        assert response.headers["X-Request"] == f"n={n}"


def test_a_later_chunks_worker_finds_the_request_through_a_copied_context_or_environ(executor):
    """A later chunk of a body deferware wraps runs with its request bound: a
    copy of the context made there carries the request, as ``environ=`` does."""
    outcome = []

    def closing(environ, how):
        given = environ if how == "environ=" else None

        def work():
            call_on_close(lambda: outcome.append(f"closed: {how}"), environ=given)

        return work

    def app(environ, start_response):
        call_on_close(lambda: None)  # hooked: close callbacks are still taken while streaming
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first "
        for how in ("copied context", "environ="):
            try:
                executor.submit(contextvars.copy_context().run, closing(environ, how)).result()
            except NoActiveRequest as exc:
                outcome.append(f"refused: {how}: {exc}")
        yield b"second"

    response = TestApp(DeferMiddleware(app)).get("/")

    assert response.body == b"first second"
    assert outcome == ["closed: copied context", "closed: environ="]


# The README example -------------------------------------------------------


def test_worker_threads_example():
    response = TestApp(worker_threads.application).get("/")
    assert response.text == "quarterly report\n"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Audited"] == "yes"


def test_worker_threads_example_needs_deferware():
    with pytest.raises(NoActiveRequest):
        TestApp(worker_threads.app).get("/")
