"""The header list a callback sees, and the one the server gets.

* Every way of changing ``response.headerlist`` in place (each mutating method
  of ``list``) reaches the server, and never changes the application's own
  header list (which may be a constant shared by every request).
* A header list no callback changed goes to the server as the application's
  own list object, as on the idle path (no copy).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pytest
from support import drive

from deferware import DeferMiddleware, after_this_request

#: The application's header list: one list shared by every request, as a module
#: constant often is. No callback may change it.
APP_HEADERS = [("Content-Type", "text/plain"), ("X-B", "2"), ("X-A", "1")]
SNAPSHOT = list(APP_HEADERS)

MUTATIONS: dict[str, Callable[[list[Any]], object]] = {
    "append": lambda headers: headers.append(("X-New", "n")),
    "extend": lambda headers: headers.extend([("X-New", "n"), ("X-Other", "o")]),
    "insert": lambda headers: headers.insert(0, ("X-New", "n")),
    "__setitem__": lambda headers: headers.__setitem__(1, ("X-B", "changed")),
    "__setitem__slice": lambda headers: headers.__setitem__(slice(1, None), [("X-New", "n")]),
    "__iadd__": lambda headers: headers.__iadd__([("X-New", "n")]),
    "__delitem__": lambda headers: headers.__delitem__(1),
    "__imul__": lambda headers: headers.__imul__(2),
    "pop": lambda headers: headers.pop(),
    "remove": lambda headers: headers.remove(("X-A", "1")),
    "clear": lambda headers: headers.clear(),
    "sort": lambda headers: headers.sort(),
    "reverse": lambda headers: headers.reverse(),
}


def app_with(*callbacks: Callable[[Any], object]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        for callback in callbacks:
            after_this_request(callback)
        start_response("200 OK", APP_HEADERS)
        return [b"body"]

    return app


def served_headers(app: Callable[..., Iterable[bytes]]) -> Any:
    sent = drive(DeferMiddleware(app))
    assert sent.start_response_calls == 1
    return sent.headers


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_change_in_place_reaches_the_server(name: str) -> None:
    mutate = MUTATIONS[name]
    expected = list(APP_HEADERS)
    mutate(expected)

    def change_in_place(response: Any) -> None:
        mutate(response.headerlist)

    headers = served_headers(app_with(change_in_place))

    assert type(headers) is list  # PEP 3333
    assert headers == expected
    assert headers is not APP_HEADERS
    assert APP_HEADERS == SNAPSHOT, "a callback changed the application's own header list"


def test_a_header_set_through_webob_reaches_the_server() -> None:
    def set_header(response: Any) -> None:
        response.headers["X-B"] = "through webob"

    headers = served_headers(app_with(set_header))

    assert headers == [("Content-Type", "text/plain"), ("X-A", "1"), ("X-B", "through webob")]
    assert APP_HEADERS == SNAPSHOT


def test_an_untouched_header_list_goes_out_as_the_applications_own() -> None:
    def read_only(response: Any) -> None:
        assert response.headers["X-A"] == "1"
        response.status = "201 Created"

    headers = served_headers(app_with(read_only, lambda response: None))

    assert headers is APP_HEADERS


def test_a_rewrite_that_keeps_every_entry_is_not_a_change() -> None:
    # WebOb's ``headers[name] = value`` first rewrites the whole list through a
    # slice, with the entries of other names rebuilt; for a name the response
    # does not have, that keeps every entry: the list is the same as before.
    def rewrite(response: Any) -> None:
        response.headerlist[:] = [(name, value) for name, value in response.headerlist]

    headers = served_headers(app_with(rewrite))

    assert headers is APP_HEADERS


def test_a_change_by_an_earlier_callback_is_kept_after_an_untouching_one() -> None:
    def add(response: Any) -> None:
        response.headerlist.append(("X-New", "n"))

    headers = served_headers(app_with(add, lambda response: None))

    assert headers == [*SNAPSHOT, ("X-New", "n")]
    assert headers is not APP_HEADERS
    assert APP_HEADERS == SNAPSHOT
