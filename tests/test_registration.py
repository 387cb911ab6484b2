"""Registering callbacks: both forms, both APIs, where a request is active, and
what is refused at registration time."""

from __future__ import annotations

import functools

import pytest
from webtest import TestApp

from deferware import DeferMiddleware, NoActiveRequest, after_this_request, call_on_close
from deferware.testing import deferred

APIS = [
    pytest.param(after_this_request, id="after_this_request"),
    pytest.param(call_on_close, id="call_on_close"),
]


def _callback(*args):
    return None


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "form", ["call", "decorator", "decorator-factory", "environ-call", "environ-decorator"]
)
def test_registration_returns_the_function_unchanged(api, form):
    environ = {}
    with deferred(environ) as collected:
        if form == "call":
            returned = api(_callback)
        elif form == "decorator":
            returned = api()(_callback)
        elif form == "decorator-factory":
            returned = api(environ=None)(_callback)
        elif form == "environ-call":
            returned = api(_callback, environ=environ)
        else:
            returned = api(environ=environ)(_callback)

    assert returned is _callback
    registered = collected.callbacks if api is after_this_request else collected.close_callbacks
    assert registered == [_callback]


@pytest.mark.parametrize("api", APIS)
def test_registration_outside_a_request_is_no_active_request(api):
    name = api.__name__
    with pytest.raises(
        NoActiveRequest, match=rf"{name}\(\) was called outside a request handled by DeferMiddleware"
    ):
        api(_callback)
    with pytest.raises(NoActiveRequest, match=rf"{name}\(func, environ=request.environ\)"):
        api(_callback)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "environ",
    [pytest.param({}, id="empty"), pytest.param({"deferware.registry": "not a registry"}, id="wrong-value")],
)
def test_registration_with_an_environ_without_registry_is_no_active_request(api, environ):
    with pytest.raises(
        NoActiveRequest, match=r"environ=\.\.\.\) was given an environ that holds no deferware"
    ) as caught:
        api(_callback, environ=environ)

    assert "DeferMiddleware" in str(caught.value)
    assert isinstance(caught.value, RuntimeError)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "value",
    [
        pytest.param(42, id="int"),
        pytest.param("callback", id="str"),
        pytest.param(object(), id="object"),
        pytest.param([_callback], id="list"),
    ],
)
def test_non_callable_is_a_type_error_at_registration(api, value, make_app, drive):
    errors = []

    def register(environ):
        try:
            api(value)
        except TypeError as error:
            errors.append(error)

    drive(DeferMiddleware(make_app("list", during=register)))

    [error] = errors
    assert f"{api.__name__}() needs a callable" in str(error)
    assert repr(value) in str(error)


async def _async_callback(*args):
    return None


async def _async_generator(*args):
    yield None


class _AsyncCallable:
    async def __call__(self, *args):
        return None


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "value",
    [
        pytest.param(_async_callback, id="async-def"),
        pytest.param(_async_generator, id="async-generator"),
        pytest.param(functools.partial(_async_callback), id="partial-of-async-def"),
        pytest.param(_AsyncCallable().__call__, id="async-method"),
    ],
)
def test_async_callable_is_a_type_error_at_registration(api, value):
    with (
        deferred() as collected,
        pytest.raises(TypeError, match=rf"{api.__name__}\(\) cannot take the async function"),
    ):
        api(value)

    assert collected.callbacks == []
    assert collected.close_callbacks == []


def test_callable_objects_are_accepted(make_app, wrap):
    class Callback:
        def __call__(self, response):
            response.headers["X-Object"] = "yes"

    def register(environ):
        after_this_request(Callback())
        after_this_request(
            functools.partial(lambda value, response: response.headers.add("X-Partial", value), "p")
        )

    result = TestApp(wrap(make_app("list", during=register))).get("/")

    assert result.headers["X-Object"] == "yes"
    assert result.headers["X-Partial"] == "p"


def test_context_and_environ_forms_reach_the_same_registry(make_app, wrap):
    def register(environ):
        after_this_request(lambda response: response.headers.add("X-Order", "context"))
        after_this_request(lambda response: response.headers.add("X-Order", "environ"), environ=environ)

    result = TestApp(wrap(make_app("list", during=register))).get("/")

    assert result.headers.getall("X-Order") == ["context", "environ"]


def test_request_is_active_inside_a_lazy_generator_body(drive):
    log = []

    def app(environ, start_response):
        return lazy(start_response)

    def lazy(start_response):
        # Before start_response: the middleware is priming this generator.
        after_this_request(lambda response: response.headers.add("X-Lazy", "yes"))
        call_on_close(lambda: log.append("close from priming"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first"
        # A later chunk, pulled through the middleware's wrapper.
        call_on_close(lambda: log.append("close from a later chunk"))
        yield b"second"

    sent = drive(DeferMiddleware(app))

    assert sent.header("X-Lazy") == ["yes"]
    assert log == ["close from priming", "close from a later chunk"]


def test_request_is_active_in_later_chunks_of_a_wrapped_eager_body(drive):
    log = []

    def app(environ, start_response):
        call_on_close(lambda: log.append("close from the app call"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body()

    def body():
        yield b"first"
        call_on_close(lambda: log.append("close from a later chunk"))
        yield b"second"

    drive(DeferMiddleware(app))

    assert log == ["close from the app call", "close from a later chunk"]


def test_no_request_is_active_after_the_middleware_returned(make_app, drive):
    seen = []

    def register(environ):
        after_this_request(lambda response: seen.append("ran"))

    drive(DeferMiddleware(make_app("lazy_generator", during=register)))

    assert seen == ["ran"]
    with pytest.raises(NoActiveRequest):
        after_this_request(_callback)
    with pytest.raises(NoActiveRequest):
        call_on_close(_callback)


def test_request_active_says_where_after_this_request_would_take_a_callback():
    import threading

    from support import drive

    from deferware import request_active

    seen = {}

    def app(environ, start_response):
        seen["in the app"] = request_active()
        seen["environ"] = environ
        worker = threading.Thread(
            target=lambda: seen.update(
                thread_context=request_active(), thread_environ=request_active(environ=environ)
            )
        )
        worker.start()
        worker.join()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    drive(DeferMiddleware(app))

    assert seen["in the app"] is True
    assert (seen["thread_context"], seen["thread_environ"]) == (False, True)
    assert request_active() is False  # outside any request
    assert request_active(environ=seen["environ"]) is False  # handed over: too late now
    assert request_active(environ={}) is False  # no registry, no request in the context
