"""Property test: DeferMiddleware against a reference model of its semantics.

Hypothesis draws an application shape, an error policy and a sequence of
``after_this_request`` callbacks. Each callback applies a few mutations (add or
set or remove a header, set or delete a cookie, change the status, rewrite the
body, or read the body without losing any of it: start iterating it, wrap it,
take a chunk and put it back) and then returns ``None``, returns a replacement ``webob.Response`` or
raises. The reference model applies the same callbacks, in order, to a plain
``webob.Response`` built from the application's status, headers and body:

* a callback that raises, under ``on_callback_error="log"``, is skipped whole
  (the middleware must roll back whatever it changed before raising), unless
  it pulled from a streaming body, which no rollback can give back: then it
  propagates as under ``"raise"``;
* under ``"raise"``, the first raising callback's exception must propagate,
  nothing may reach the server, and the iterable and close callbacks must still
  be closed/run exactly once.

The served status, header list and body must equal the model's; ``close()``
runs once and the close callbacks once, always. The number of examples run is
printed and asserted.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import BODY, COUNTED_SHAPES, TEXT_HEADERS, Counter, drive, make_app, make_environ
from webob import Response

from deferware import DeferMiddleware, after_this_request, call_on_close

settings.register_profile(
    "deferware-properties",
    max_examples=200,
    deadline=None,
    database=None,  # no .hypothesis/ directory written by CI runs
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile("deferware-properties")
STATUS, HEADERS = "200 OK", [*TEXT_HEADERS, ("X-App", "shape")]


class CallbackFailure(Exception):
    """Raised by a drawn callback whose terminal is "raise"."""


NAMES = st.sampled_from(["X-A", "X-B", "Content-Type", "Cache-Control", "x-a"])
VALUES = st.text(alphabet="abcdefghij0123456789 -=;/", min_size=0, max_size=8)
COOKIES = st.sampled_from(["lang", "theme", "session"])
MUTATIONS = st.one_of(
    st.tuples(st.just("add_header"), NAMES, VALUES),
    st.tuples(st.just("set_header"), NAMES, VALUES),
    st.tuples(st.just("remove_header"), NAMES),
    st.tuples(st.just("set_cookie"), COOKIES, st.text(alphabet="abcxyz019", max_size=6)),
    st.tuples(st.just("delete_cookie"), COOKIES),
    st.tuples(st.just("status"), st.sampled_from([200, 201, 202, 203, 400, 404, 418, 500, 503])),
    st.tuples(st.just("body"), st.binary(min_size=0, max_size=6)),
    # Reads that lose nothing; under "log", a failing callback that pulled from
    # a streaming body propagates, since what it pulled cannot be put back.
    st.tuples(st.just("iter_only")),
    st.tuples(st.just("wrap")),
    st.tuples(st.just("peek_and_put_back")),
)
CALLBACKS = st.tuples(
    st.lists(MUTATIONS, max_size=4),
    st.sampled_from(["none", "none", "replace", "raise"]),
)


def mutate(response: Response, mutations: list[tuple[Any, ...]]) -> None:
    for mutation in mutations:
        kind, *args = mutation
        if kind == "add_header":
            response.headers.add(*args)
        elif kind == "set_header":
            response.headers[args[0]] = args[1]
        elif kind == "remove_header":
            response.headers.pop(args[0], None)
        elif kind == "set_cookie":
            response.set_cookie(args[0], args[1])
        elif kind == "delete_cookie":
            response.delete_cookie(args[0])
        elif kind == "status":
            response.status_code = args[0]
        elif kind == "body":
            response.body = response.body + args[0]
        elif kind == "iter_only":
            iter(response.app_iter)
        elif kind == "wrap":
            response.app_iter = (chunk for chunk in response.app_iter)
        elif kind == "peek_and_put_back":
            chunks = iter(response.app_iter)
            response.app_iter = itertools.chain(list(itertools.islice(chunks, 1)), chunks)


def make_callback(index: int, spec: tuple[list[tuple[Any, ...]], str]) -> Callable[[Response], Any]:
    mutations, terminal = spec

    def callback(response: Response) -> Response | None:
        mutate(response, mutations)
        if terminal == "replace":
            return Response(body=f"replacement {index}".encode(), content_type="text/plain", status=203)
        if terminal == "raise":
            raise CallbackFailure(f"callback {index} failed")
        return None

    callback.__qualname__ = f"drawn_callback_{index}"
    return callback


def advances(mutations: list[tuple[Any, ...]], streaming: bool) -> bool:
    """Whether *mutations* pull from the (streaming) body the callback was given."""
    reaching = streaming
    for kind, *_ in mutations:
        if kind in ("body", "peek_and_put_back") and reaching:
            return True
        if kind == "body":
            reaching = False  # WebOb keeps what it read as a list
    return False


def leaves_a_list(spec: tuple[list[tuple[Any, ...]], str], was_list: bool) -> bool:
    is_list = was_list
    for kind, *_ in spec[0]:
        if kind == "body":
            is_list = True
        elif kind in ("wrap", "peek_and_put_back"):
            is_list = False
    return is_list or spec[1] == "replace"


def model(
    specs: list[tuple[list[tuple[Any, ...]], str]], policy: str
) -> tuple[str, list[tuple[str, str]], bytes]:
    """The semantics, on a plain webob.Response. Raises CallbackFailure under
    "raise", and under "log" for a failing callback that pulled from a streaming
    body (what it pulled cannot be given back)."""
    response = Response(status=STATUS, headerlist=list(HEADERS), app_iter=iter(list(BODY)))
    is_list = False  # every shape's body streams
    for index, spec in enumerate(specs):
        if spec[1] == "raise" and policy == "log":
            if advances(spec[0], streaming=not is_list):
                raise CallbackFailure(f"callback {index} failed")
            continue  # logged and rolled back: as if it never ran
        result = make_callback(index, spec)(response)
        if result is not None:
            response = result
        is_list = leaves_a_list(spec, is_list)
    return response.status, list(response.headerlist), b"".join(response.app_iter)


_EXPIRES = re.compile(r"; expires=[^;]*", re.IGNORECASE)


def normal(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # delete_cookie stamps "expires" with the current time: compare without it.
    return [(name, _EXPIRES.sub("", value)) for name, value in headers]


examples_run = 0


@settings(PROFILE)
@given(
    shape=st.sampled_from(COUNTED_SHAPES),
    policy=st.sampled_from(["raise", "log"]),
    specs=st.lists(CALLBACKS, min_size=0, max_size=6),
    close_callbacks=st.integers(min_value=0, max_value=2),
)
def check_against_model(
    shape: str, policy: str, specs: list[tuple[list[tuple[Any, ...]], str]], close_callbacks: int
) -> None:
    global examples_run
    examples_run += 1
    counter = Counter()

    def during(environ: dict[str, Any]) -> None:
        for index, spec in enumerate(specs):
            after_this_request(make_callback(index, spec), environ=environ if index % 2 else None)
        for number in range(close_callbacks):
            call_on_close(counter.closer(f"close-{number}"))

    app = make_app(shape, counter=counter, during=during, status=STATUS, headers=HEADERS)
    app = DeferMiddleware(app, on_callback_error=policy)
    try:
        expected = model(specs, policy)
    except CallbackFailure as failure:
        calls: list[object] = []
        with pytest.raises(CallbackFailure, match=re.escape(str(failure))):
            app(make_environ(), lambda *args: calls.append(args))
        assert calls == []
    else:
        served = drive(app)
        assert (served.status, normal(served.headers or []), served.body) == (
            expected[0],
            normal(expected[1]),
            expected[2],
        )
        assert served.start_response_calls == 1
    assert (counter.created, counter.closes) == (1, 1)
    assert counter.close_callbacks == [f"close-{number}" for number in range(close_callbacks)]


def test_middleware_matches_reference_model(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("CRITICAL", logger="deferware")  # "log" examples log on purpose
    before = examples_run
    check_against_model()
    ran = examples_run - before
    print(f"\n[properties] hypothesis examples run: {ran} (max_examples={PROFILE.max_examples})")
    assert ran >= PROFILE.max_examples // 2, f"only {ran} examples ran"


@pytest.mark.parametrize("shape", COUNTED_SHAPES)
def test_log_policy_propagates_a_failure_after_rewriting_a_streaming_body(shape: str) -> None:
    # Pinned: under "log", a callback that read a streaming body (to rewrite it)
    # and then raised cannot be rolled back (the chunks it read are gone): the
    # error propagates, nothing reaches the server, and everything is closed once.
    def rewrite_then_fail(response: Response) -> None:
        response.body = response.body + b"!"
        raise CallbackFailure("failed after rewriting the body")

    counter = Counter()
    app = make_app(shape, counter=counter, during=lambda environ: after_this_request(rewrite_then_fail))
    calls: list[object] = []
    with pytest.raises(CallbackFailure, match="failed after rewriting the body"):
        DeferMiddleware(app, on_callback_error="log")(make_environ(), lambda *args: calls.append(args))
    assert calls == []
    assert (counter.created, counter.closes) == (1, 1)
