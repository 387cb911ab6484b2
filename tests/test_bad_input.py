"""Bad input is refused with a message that says what and where.

* A callback that leaves an unsafe status or header (CR, LF, NUL and other
  control characters, values beyond latin-1, names that are not HTTP tokens)
  gets :class:`deferware.InvalidHeader` naming the callback and the header,
  and nothing reaches the server (``start_response`` is never called).
* Bad registrations (not callable, ``async``, a bad return value), bad options
  (keyword and ini), and registrations outside a request or too late are
  refused with their documented messages.
"""

from __future__ import annotations

import functools
import gc
import logging
import re
import warnings
from typing import Any, Callable, Iterable

import pytest
from support import Counter, drive, make_app, make_environ
from webob import Response

from deferware import (
    DeferMiddleware,
    InvalidHeader,
    NoActiveRequest,
    ResponseAlreadyStarted,
    after_this_request,
    call_on_close,
)
from deferware.paste import filter_factory


class Recorder:
    """A ``start_response`` that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]]]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.calls.append((status, headers))
        return lambda data: None


PLAIN = [("Content-Type", "text/plain")]


def app_with(callback: Callable[[Response], Any], counter: Counter) -> Callable[..., Iterable[bytes]]:
    def during(environ: dict[str, Any]) -> None:
        after_this_request(callback)
        call_on_close(counter.closer("close"))

    return make_app("closing", counter=counter, during=during, headers=PLAIN, body=[b"body"])


def refused(callback: Callable[[Response], Any], match: str) -> None:
    """Run *callback* in a request; assert InvalidHeader(match) and that nothing
    reached the server while the iterable was still closed and close callbacks ran."""
    counter = Counter()
    recorder = Recorder()
    with pytest.raises(InvalidHeader, match=match):
        DeferMiddleware(app_with(callback, counter))(make_environ(), recorder)
    assert recorder.calls == [], "an unsafe header reached the server"
    assert (counter.closes, counter.close_callbacks) == (1, ["close"])


BAD_VALUES = [
    pytest.param("a\r\nSet-Cookie: evil=1", "\r", id="CRLF"),
    pytest.param("a\rb", "\r", id="CR"),
    pytest.param("a\nb", "\n", id="LF"),
    pytest.param("a\x00b", "\x00", id="NUL"),
    pytest.param("a\x1bb", "\x1b", id="ESC"),
    pytest.param("a\x7fb", "\x7f", id="DEL"),
    pytest.param("a\x0bb", "\x0b", id="VT"),
]
NON_LATIN1 = [
    pytest.param("price: 5\u20ac", "\u20ac", id="euro"),
    pytest.param("line\u2028separator", "\u2028", id="line-separator"),
    pytest.param("\U0001f600", "\U0001f600", id="emoji"),
]


def message_for_value(value: str, character: str, how: str) -> str:
    return (
        rf"after_this_request callback .*{re.escape(how)} set an unsafe response header: "
        rf"header 'X-Bad' has the value {re.escape(repr(value))}, whose character "
        rf"{re.escape(repr(character))} is not allowed"
    )


@pytest.mark.parametrize(("value", "character"), BAD_VALUES + NON_LATIN1)
def test_unsafe_header_value_set_through_headers_is_refused(value: str, character: str) -> None:
    def set_bad_value(response: Response) -> None:
        response.headers["X-Bad"] = value

    refused(set_bad_value, message_for_value(value, character, "set_bad_value"))


@pytest.mark.parametrize(("value", "character"), BAD_VALUES + NON_LATIN1)
def test_unsafe_header_value_in_new_headerlist_is_refused(value: str, character: str) -> None:
    def replace_headerlist(response: Response) -> None:
        response.headerlist = [("Content-Type", "text/plain"), ("X-Bad", value)]

    refused(replace_headerlist, message_for_value(value, character, "replace_headerlist"))


@pytest.mark.parametrize(("value", "character"), BAD_VALUES + NON_LATIN1)
def test_unsafe_header_value_in_replacement_response_is_refused(value: str, character: str) -> None:
    def return_bad_response(response: Response) -> Response:
        return Response(body=b"new", headerlist=[("Content-Type", "text/plain"), ("X-Bad", value)])

    refused(return_bad_response, message_for_value(value, character, "return_bad_response"))


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda kept: [*kept, ("X-Bad", "a\r\nb")], id="appended"),
        pytest.param(lambda kept: [("X-Bad", "a\r\nb"), *kept], id="first"),
        pytest.param(  # as WebOb does: the kept entries rebuilt as new, equal tuples
            lambda kept: [(name, value) for name, value in kept] + [("X-Bad", "a\r\nb")], id="rebuilt-kept"
        ),
    ],
)
def test_unsafe_header_among_kept_ones_in_a_slice_rewrite_is_refused(rewrite: Any) -> None:
    # WebOb rewrites the list through a slice; entries already there are not
    # checked again, a new one among them is.
    def rewrite_headers(response: Response) -> None:
        response.headerlist[:] = rewrite(list(response.headerlist))

    refused(rewrite_headers, message_for_value("a\r\nb", "\r", "rewrite_headers"))


def test_unhashable_entry_in_a_slice_rewrite_is_refused() -> None:
    def rewrite_headers(response: Response) -> None:
        response.headerlist[:] = [*response.headerlist, ["X-Bad", "value"]]

    refused(
        rewrite_headers,
        r"after_this_request callback .*rewrite_headers set an unsafe response header: "
        r"header \['X-Bad', 'value'\] is not a \(name, value\) tuple",
    )


@pytest.mark.parametrize(
    ("value", "fix"),
    [
        pytest.param(5, "convert the value to str (e.g. str(5))", id="int"),
        # str() would send the text "None" or "b'bytes'": the fix is another one.
        pytest.param(
            None,
            "leave the header out to send none (del response.headers['X-Count']), or give a str",
            id="None",
        ),
        pytest.param(b"bytes", "decode it (e.g. b'bytes'.decode('latin-1'))", id="bytes"),
    ],
)
def test_a_non_str_header_value_is_refused_with_the_conversion_to_make(value: Any, fix: str) -> None:
    def set_number(response: Response) -> None:
        response.headerlist.append(("X-Count", value))

    refused(
        set_number,
        rf"header 'X-Count' has a {type(value).__name__} value {re.escape(repr(value))}; values must be "
        rf"str\. Nothing was sent; {re.escape(fix)}\.$",
    )


def test_an_unsafe_character_is_refused_with_how_to_encode_it() -> None:
    def set_crlf(response: Response) -> None:
        response.headers["X-Bad"] = "a\r\nb"

    refused(
        set_crlf,
        r"Nothing was sent; remove the character or encode the value \(e\.g\. percent-encode it\)\.$",
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("X-Bad\r\nInjected", id="CRLF"),
        pytest.param("X-Bad\x00", id="NUL"),
        pytest.param("X-Bad\n", id="LF"),
        pytest.param("X\x01Bad", id="SOH"),
        pytest.param("X Bad", id="space"),
        pytest.param("X:Bad", id="colon"),
        pytest.param("X-B\u00e4d", id="non-ascii"),
        pytest.param("", id="empty"),
    ],
)
def test_unsafe_header_name_is_refused(name: str) -> None:
    def add_bad_name(response: Response) -> None:
        response.headers.add(name, "value")

    refused(
        add_bad_name,
        rf"after_this_request callback .*add_bad_name set an unsafe response header: "
        rf"header name {re.escape(repr(name))} is not an HTTP token",
    )


@pytest.mark.parametrize(
    "status",
    [
        pytest.param("200 OK\r\nSet-Cookie: evil=1", id="CRLF"),
        pytest.param("200 OK\x00", id="NUL"),
        pytest.param("99 Too Low", id="two-digits"),
        pytest.param("2000 OK", id="four-digits"),
        pytest.param("200 \u20ac", id="non-latin1"),
        pytest.param("200 \x1b[31mOK", id="ESC"),
    ],
)
def test_bad_status_is_refused(status: str) -> None:
    def set_bad_status(response: Response) -> None:
        response.status = status

    refused(
        set_bad_status,
        rf"after_this_request callback .*set_bad_status set the status {re.escape(repr(status))}, "
        r"which is not a 3-digit code",
    )


def test_unsafe_header_under_log_is_logged_and_rolled_back(caplog: pytest.LogCaptureFixture) -> None:
    def set_bad_value(response: Response) -> None:
        response.headers["X-Good"] = "kept? no: rolled back with the rest"
        response.headers["X-Bad"] = "a\r\nb"

    counter = Counter()
    with caplog.at_level(logging.ERROR, logger="deferware"):
        served = drive(DeferMiddleware(app_with(set_bad_value, counter), on_callback_error="log"))
    assert served.start_response_calls == 1
    assert served.headers == [("Content-Type", "text/plain")]
    assert served.body == b"body"
    assert "set_bad_value" in caplog.text
    assert "X-Bad" in caplog.text
    assert (counter.closes, counter.close_callbacks) == (1, ["close"])


# -- registrations ---------------------------------------------------------------------------------


def run_request(register: Callable[[dict[str, Any]], object]) -> Any:
    """Run one request whose application calls ``register(environ)``."""
    return drive(DeferMiddleware(make_app("list", during=register, headers=PLAIN, body=[b"body"])))


async def async_function(*args: Any) -> None:
    pass


async def async_generator_function(*args: Any) -> Any:
    yield None


class AsyncCallable:
    async def __call__(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("api", [after_this_request, call_on_close])
@pytest.mark.parametrize(
    "value",
    [pytest.param(42, id="int"), pytest.param("func", id="str"), pytest.param(None, id="None")],
)
def test_non_callable_registration_is_refused(api: Callable[..., Any], value: object) -> None:
    with pytest.raises(
        TypeError, match=rf"{api.__name__}\(\) needs a callable, got {re.escape(repr(value))}"
    ):
        run_request(lambda environ: api(value))


@pytest.mark.parametrize("api", [after_this_request, call_on_close])
def test_none_is_refused_not_taken_as_the_decorator_form(api: Callable[..., Any]) -> None:
    # call_on_close(flush()) passes flush's None: that must not return a decorator
    # nobody applies (registering nothing); the message says what went wrong.
    with pytest.raises(TypeError, match=rf"not the result of calling it: {api.__name__}\(flush\)"):
        run_request(lambda environ: api(None))
    with pytest.raises(TypeError, match=r"needs a callable, got None"):
        run_request(lambda environ: api(None, environ=environ))


@pytest.mark.parametrize("api", [after_this_request, call_on_close])
def test_an_environ_passed_positionally_is_refused_with_the_keyword_form(api: Callable[..., Any]) -> None:
    name = api.__name__
    with pytest.raises(
        TypeError, match=rf"got a dict\. .*as a keyword: @{name}\(environ=environ\)"
    ) as caught:
        run_request(lambda environ: api(environ))
    assert "wsgi." not in str(caught.value)  # the environ itself is not printed


@pytest.mark.parametrize("api", [after_this_request, call_on_close])
def test_decorator_form_refuses_a_non_callable(api: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match=rf"{api.__name__}\(\) needs a callable, got 42"):
        run_request(lambda environ: api(environ=environ)(42))


@pytest.mark.parametrize("api", [after_this_request, call_on_close])
@pytest.mark.parametrize(
    "func",
    [
        pytest.param(async_function, id="async-def"),
        pytest.param(async_generator_function, id="async-generator"),
        pytest.param(functools.partial(async_function, 1), id="partial-of-async-def"),
    ],
)
def test_async_registration_is_refused(api: Callable[..., Any], func: Any) -> None:
    with pytest.raises(TypeError, match=rf"{api.__name__}\(\) cannot take the async function"):
        run_request(lambda environ: api(func))


@pytest.mark.parametrize("api", [after_this_request, call_on_close])
def test_async_callable_object_registration_is_refused(api: Callable[..., Any]) -> None:
    # ``async def __call__`` is as detectable as ``async def``: the bound method is a
    # coroutine function. Accepting it means its coroutine is created and never
    # awaited later (for call_on_close: a "never awaited" RuntimeWarning).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match=rf"{api.__name__}\(\) cannot take the async function"):
            run_request(lambda environ: api(AsyncCallable()))
        gc.collect()
    assert [str(warning.message) for warning in caught] == []


def returns_coroutine(response: Any = None) -> Any:
    return async_function()


@pytest.mark.parametrize(
    ("result", "type_name"),
    [
        pytest.param("body", "builtins.str", id="str"),
        pytest.param(b"body", "builtins.bytes", id="bytes"),
        pytest.param(42, "builtins.int", id="int"),
        pytest.param(True, "builtins.bool", id="bool"),
        pytest.param({"status": 200}, "builtins.dict", id="dict"),
    ],
)
def test_callback_returning_wrong_type_is_refused(result: object, type_name: str) -> None:
    def bad_return(response: Response) -> Any:
        return result

    with pytest.raises(
        TypeError,
        match=rf"after_this_request callback .*bad_return returned a {re.escape(type_name)}; "
        r"a callback must return None .* or a webob.Response",
    ):
        run_request(lambda environ: after_this_request(bad_return))


def test_callback_returning_coroutine_is_refused_without_runtime_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match=r"returns_coroutine returned a builtins\.coroutine.*awaitable"):
            run_request(lambda environ: after_this_request(returns_coroutine))
        gc.collect()
    assert [str(warning.message) for warning in caught] == []


def test_close_callback_returning_coroutine_leaks_no_runtime_warning() -> None:
    # call_on_close ignores the return value; a sync callable that returns a
    # coroutine must not leave a "never awaited" RuntimeWarning behind.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        served = run_request(lambda environ: call_on_close(returns_coroutine))
        gc.collect()
    assert served.body == b"body"
    assert [str(warning.message) for warning in caught] == []


def test_returning_webob_request_is_refused() -> None:
    from webob import Request

    def return_request(response: Response) -> Any:
        return Request.blank("/")

    with pytest.raises(TypeError, match=r"return_request returned a webob\.request\.Request"):
        run_request(lambda environ: after_this_request(return_request))


# -- options ---------------------------------------------------------------------------------------


def plain_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", list(PLAIN))
    return [b"body"]


@pytest.mark.parametrize("value", ["ignore", "LOGS", "", None, True, 0])
def test_bad_keyword_option_value_is_refused(value: object) -> None:
    with pytest.raises(
        ValueError,
        match=rf"DeferMiddleware option 'on_callback_error' must be one of 'raise', 'log'; "
        rf"got {re.escape(repr(value))}\.",
    ):
        DeferMiddleware(plain_app, on_callback_error=value)  # type: ignore[arg-type]


def test_unknown_keyword_option_is_refused() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'on_error'"):
        DeferMiddleware(plain_app, on_error="log")  # type: ignore[call-arg]


def test_positional_option_is_refused() -> None:
    with pytest.raises(TypeError, match="positional argument"):
        DeferMiddleware(plain_app, "log")  # type: ignore[misc]


def test_non_callable_app_is_refused() -> None:
    with pytest.raises(TypeError, match=r"DeferMiddleware needs a WSGI application \(a callable\), got 42"):
        DeferMiddleware(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["bogus", "true", "raise,log", "0"])
def test_bad_ini_option_value_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"option 'on_callback_error' must be one of 'raise', 'log'; got '"):
        filter_factory({}, on_callback_error=text)


def test_bad_ini_option_value_is_quoted_as_written() -> None:
    # Parsing ignores case and blanks; the error still shows what the file says.
    with pytest.raises(ValueError, match=r"; got ' Ignore '\.$"):
        filter_factory({}, on_callback_error=" Ignore ")


@pytest.mark.parametrize(("text", "expected"), [(" LOG ", "log"), ("Raise", "raise"), ("log\n", "log")])
def test_ini_option_value_is_parsed_strictly_but_without_case(text: str, expected: str) -> None:
    middleware = filter_factory({}, on_callback_error=text)(plain_app)
    assert middleware.options["on_callback_error"] == expected


def test_unknown_ini_option_is_refused() -> None:
    with pytest.raises(
        ValueError,
        match=r"Unknown deferware option\(s\) 'on_error' in the ini section with 'use = egg:deferware'\. "
        r"Known options",
    ):
        filter_factory({}, on_error="log")


def test_ini_option_in_default_section_is_refused() -> None:
    with pytest.raises(
        ValueError,
        match=r"deferware option\(s\) 'on_callback_error' found in the global configuration \(\[DEFAULT\]",
    ):
        filter_factory({"on_callback_error": "log"}, on_callback_error="raise")


# -- outside a request, too late -----------------------------------------------------------------


def noop(*args: Any) -> None:
    pass


@pytest.mark.parametrize("api", [after_this_request, call_on_close])
def test_registration_outside_a_request_is_refused(api: Callable[..., Any]) -> None:
    with pytest.raises(
        NoActiveRequest,
        match=rf"{api.__name__}\(\) was called outside a request handled by DeferMiddleware\..*"
        rf"{api.__name__}\(func, environ=request\.environ\)",
    ):
        api(noop)


@pytest.mark.parametrize("api", [after_this_request, call_on_close])
def test_registration_with_foreign_environ_is_refused(api: Callable[..., Any]) -> None:
    with pytest.raises(NoActiveRequest, match=r"was given an environ that holds no deferware registry"):
        api(noop, environ=make_environ())


@pytest.mark.parametrize("api", [after_this_request, call_on_close])
def test_registration_with_a_request_for_environ_names_request_environ(api: Callable[..., Any]) -> None:
    # A common slip: environ=request instead of environ=request.environ. The
    # registration is refused with a message naming the fix, in the request.
    from webob import Request

    def register(environ: dict[str, Any]) -> None:
        api(noop, environ=Request(environ))

    with pytest.raises(TypeError, match=rf"{api.__name__}\(environ=\.\.\.\) needs .*Pass request\.environ\."):
        run_request(register)
    with pytest.raises(TypeError, match=r"got 42 of type int\. Pass the environ the application was given"):
        run_request(lambda environ: api(noop, environ=42))


def test_after_this_request_after_hand_over_is_refused() -> None:
    kept: dict[str, Any] = {}
    run_request(lambda environ: kept.update(environ=environ))
    with pytest.raises(ResponseAlreadyStarted, match=r"after_this_request\(.*\) came too late"):
        after_this_request(noop, environ=kept["environ"])


def test_after_this_request_while_streaming_is_refused() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        after_this_request(noop)
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first"
        after_this_request(noop, environ=environ)  # the headers are out by now
        yield b"second"

    with pytest.raises(ResponseAlreadyStarted, match=r"came too late: the status and headers"):
        drive(DeferMiddleware(app))


def test_call_on_close_after_close_is_refused() -> None:
    kept: dict[str, Any] = {}

    def register(environ: dict[str, Any]) -> None:
        kept["environ"] = environ
        call_on_close(noop)

    run_request(register)
    with pytest.raises(
        ResponseAlreadyStarted,
        match=r"call_on_close\(.*\) came too late: the close callbacks of this response already ran",
    ):
        call_on_close(noop, environ=kept["environ"])


def test_call_on_close_after_hand_over_without_hook_is_refused() -> None:
    kept: dict[str, Any] = {}
    run_request(lambda environ: kept.update(environ=environ))
    with pytest.raises(ResponseAlreadyStarted, match=r"handed to the server without a close hook"):
        call_on_close(noop, environ=kept["environ"])


def test_call_on_close_after_request_failed_is_refused() -> None:
    kept: dict[str, Any] = {}

    def register(environ: dict[str, Any]) -> None:
        kept["environ"] = environ
        raise ValueError("the application failed")

    with pytest.raises(ValueError, match="the application failed"):
        run_request(register)
    with pytest.raises(ResponseAlreadyStarted, match=r"already ended with an exception"):
        call_on_close(noop, environ=kept["environ"])
