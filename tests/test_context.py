"""The application's code runs in the server's own context, as without deferware.

The middleware makes the request's registry findable by each stretch of
application code it drives (the call, priming a lazy generator, every later
chunk, the iterable's ``close()``), in the context the server calls it in. It never moves
that code into a copied context: a context variable the application sets in
one chunk and resets in a later one, or in ``close()``, must work as it does
on a bare server (a ``ContextVar.reset`` token is only valid in the context
that made it). Flask's ``stream_with_context`` relies on exactly that.
"""

from __future__ import annotations

import contextvars

import pytest

from deferware import DeferMiddleware, after_this_request, call_on_close
from deferware.registry import current_registry

var: contextvars.ContextVar[str] = contextvars.ContextVar("test_context.var", default="unset")


def add_header(response):
    response.headers["X-Deferred"] = "yes"


REGISTRATIONS = {
    "nothing": lambda: None,
    "header callback": lambda: after_this_request(add_header),
    "close callback": lambda: call_on_close(lambda: None),
    "both": lambda: (after_this_request(add_header), call_on_close(lambda: None)),
}


def lazy_token_app(register, seen):
    """A lazy generator that sets a context variable before start_response and
    resets it in its ``finally`` (after the last chunk, or on close)."""

    def app(environ, start_response):
        def body():
            token = var.set("request-local")
            try:
                register()
                start_response("200 OK", [("Content-Type", "text/plain")])
                yield b"a"
                seen.append(var.get())
                yield b"b"
            finally:
                var.reset(token)
                seen.append("reset")

        return body()

    return app


def eager_token_app(register, seen):
    """Sets the variable in the application call, resets it in the body's ``finally``."""

    def app(environ, start_response):
        token = var.set("request-local")
        register()
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            try:
                yield b"a"
                seen.append(var.get())
                yield b"b"
            finally:
                var.reset(token)
                seen.append("reset")

        return body()

    return app


@pytest.mark.parametrize("policy", ["raise", "log"])
@pytest.mark.parametrize("registration", sorted(REGISTRATIONS))
@pytest.mark.parametrize("make_app", [lazy_token_app, eager_token_app], ids=["lazy", "eager"])
@pytest.mark.parametrize("read_all", [True, False], ids=["read-all", "client-gone"])
def test_a_token_made_in_one_chunk_resets_in_another(make_app, registration, policy, read_all, drive):
    # Driven as a server does, in one context: all chunks, or one and then the client goes away.
    stop_after = None if read_all else 1
    bare_seen, seen = [], []
    expected = drive(make_app(lambda: None, bare_seen), stop_after=stop_after).chunks
    app = DeferMiddleware(make_app(REGISTRATIONS[registration], seen), on_callback_error=policy)
    assert drive(app, stop_after=stop_after).chunks == expected
    assert seen == bare_seen
    assert seen[-1] == "reset"
    assert var.get() == "unset"


def test_the_request_is_active_while_the_body_runs_and_closes():
    """Found from each chunk and from close(): the context form works there,
    and nothing of the request is left in the server's context between them."""
    ran = []

    def app(environ, start_response):
        def body():
            try:
                start_response("200 OK", [("Content-Type", "text/plain")])
                yield b"a"
                call_on_close(lambda: ran.append("from a chunk"))
                yield b"b"
            finally:
                call_on_close(lambda: ran.append("from close()"))

        call_on_close(lambda: ran.append("from the call"))
        return body()

    iterable = DeferMiddleware(app)({"REQUEST_METHOD": "GET"}, lambda *args: None)
    chunks = iter(iterable)
    assert next(chunks) == b"a"
    with pytest.raises(LookupError):
        current_registry.get()  # between chunks, the server's context is its own
    assert next(chunks) == b"b"
    iterable.close()
    assert ran == ["from the call", "from a chunk", "from close()"]


def flask_streaming_app(register_close):
    """A Flask app streaming with ``stream_with_context``; returns (app, teardowns)."""
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    teardowns = []

    @app.teardown_request
    def teardown(exc):
        teardowns.append(repr(exc))

    @app.route("/")
    def index():
        register_close()

        def generate():
            for i in range(3):
                yield f"chunk {i} {flask.request.path}\n"

        return app.response_class(flask.stream_with_context(generate()))

    return app, teardowns


def test_flask_stream_with_context_closes_as_without_deferware_after_a_disconnect(drive):
    results = []
    closed = []
    for wrap in (False, True):
        register = (lambda: call_on_close(lambda: closed.append(True))) if wrap else (lambda: None)
        app, teardowns = flask_streaming_app(register)
        if wrap:
            app.wsgi_app = DeferMiddleware(app.wsgi_app)  # type: ignore[method-assign]
        # The client goes away after one chunk: close() raises nothing.
        first = drive(app, stop_after=1).chunks[0]
        results.append((first, teardowns))
    assert results[1] == results[0]
    assert len(results[0][1]) == 2  # the view's request context, and the stream's
    assert closed == [True]
