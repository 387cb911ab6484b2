"""WebOb glue: the ``webob.Response`` callbacks see, the checks on what they leave in it, and what
finally goes to the server. :func:`build_response` is the only code in deferware that touches
WebOb internals; everything else uses WebOb's public properties.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable

from webob import Response

from .exceptions import InvalidHeader

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["build_response", "checked", "describe", "outgoing", "send_itself"]

Headers = list[tuple[str, str]]


def _public_response(status: str, headerlist: Headers, app_iter: Iterable[bytes]) -> Response:
    return Response(status=status, headerlist=headerlist, app_iter=app_iter)


def _direct_response(status: str, headerlist: Headers, app_iter: Iterable[bytes]) -> Response:
    # WebOb's constructor parses the status through int(), which fails for every "200 OK"
    # and takes the exception path; this status goes out as it came, so the state the
    # constructor would set is set directly. A test compares the two.
    response = Response.__new__(Response)
    response._status = status  # type: ignore[attr-defined]
    response._headers = None  # type: ignore[attr-defined]
    response._headerlist = headerlist  # type: ignore[attr-defined]
    response.conditional_response = False
    response._app_iter = app_iter  # type: ignore[attr-defined]
    return response


def _same_as_constructor() -> bool:
    args = ("404 Not Found", [("Content-Type", "text/plain")], [b"x"])
    try:
        return vars(_direct_response(*args)) == vars(_public_response(*args))
    except Exception:  # noqa: BLE001 # pragma: no cover - a WebOb that changed shape
        return False


#: Builds a ``webob.Response`` over a status, header list and body (shared, not copied), as
#: WebOb's constructor would (checked at import).
build_response = _direct_response if _same_as_constructor() else _public_response


def describe(func: Any) -> str:
    """A short, readable name for a callback in messages."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    module = getattr(func, "__module__", None)
    if name:
        return f"{module}.{name}" if module else str(name)
    return repr(func)


# RFC 9110: a name is a token; a value is visible latin-1, space and tab.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[^\t\x20-\x7e\x80-\xff]")
_STATUS = re.compile(r"[1-9][0-9]{2} [\t\x20-\x7e\x80-\xff]*")


def _header_problem(item: Any) -> tuple[str, str] | None:
    """What is wrong with *item* as a response header, and the fix; None if nothing."""
    if type(item) is not tuple or len(item) != 2:
        return f"header {item!r} is not a (name, value) tuple", "add a (name, value) tuple of str"
    name, value = item
    if type(name) is not str or _TOKEN.fullmatch(name) is None:
        problem = f"header name {name!r} is not an HTTP token (letters, digits, !#$%&'*+-.^_`|~)"
        return problem, "use a name made of those characters only"
    if type(value) is not str:
        problem = f"header {name!r} has a {type(value).__name__} value {value!r}; values must be str"
        if value is None:
            return (
                problem,
                f"leave the header out to send none (del response.headers[{name!r}]), or give a str",
            )
        if isinstance(value, (bytes, bytearray)):  # str() would send the text "b'...'"
            return problem, f"decode it (e.g. {value!r}.decode('latin-1'))"
        return problem, f"convert the value to str (e.g. str({value!r}))"
    bad = _BAD_VALUE.search(value)
    if bad is not None:
        problem = (
            f"header {name!r} has the value {value!r}, whose character {bad.group()!r} is not allowed (CR, "
            "LF, NUL and other control characters split the response; characters beyond latin-1 cannot "
            "be sent)"
        )
        return problem, "remove the character or encode the value (e.g. percent-encode it)"
    return None


def _plainly_safe(item: Any) -> bool:
    """The common case, decided by str methods: a (token, printable ASCII) pair of str."""
    if type(item) is not tuple or len(item) != 2:
        return False
    name, value = item
    if type(name) is not str or type(value) is not str:
        return False
    return value.isascii() and value.isprintable() and _TOKEN.fullmatch(name) is not None


def checked(func: Any, response: Response, status: str, headers: Headers) -> tuple[str, Headers]:
    """The status and (a copy of) the header list *func* left in *response*; raises
    :class:`InvalidHeader`, naming *func*, for what is unsafe there. *status* and *headers* are
    what the previous check saw (at first, the application's own, which pass as they came, as
    they would without deferware): only what changed since is looked at."""
    new_status = response.status
    if new_status != status and (type(new_status) is not str or _STATUS.fullmatch(new_status) is None):
        raise InvalidHeader(
            f"after_this_request callback {describe(func)} set the status {new_status!r}, which is not a "
            "3-digit code, a space and a reason phrase. Set response.status_code, or a status such as "
            "'404 Not Found'."
        )
    new_headers = response.headerlist
    if new_headers == headers:
        return new_status, headers
    for item in new_headers:
        if item in headers or _plainly_safe(item):  # accepted before, or printable ASCII
            continue
        found = _header_problem(item)
        if found is not None:
            raise InvalidHeader(
                f"after_this_request callback {describe(func)} set an unsafe response header: {found[0]}. "
                f"Nothing was sent; {found[1]}."
            )
    return new_status, list(new_headers)  # a copy: callbacks change the response's list in place


def send_itself(response: Response, environ: WSGIEnvironment) -> Response:
    """*response* as it sends itself, as a plain ``webob.Response``.

    deferware hands status, headers and body to the server directly, not through
    ``Response.__call__`` (which would rewrite a relative ``Location``). Some responses do their
    work there: ``webob.exc`` and Pyramid HTTP exceptions build their page, a
    ``conditional_response`` answers 304, 206 or 416. They are run as the WSGI applications they
    are; a conditional response keeps its own ``Location``.
    """
    sent: list[Any] = []

    def start_response(status: str, headers: Headers, exc_info: OptExcInfo | None = None) -> Any:
        sent[:] = (status, headers)
        return _no_write

    if type(response).__call__ is Response.__call__:  # only conditional: skip the Location rewrite
        body = response.conditional_response_app(environ, start_response)
    else:
        body = response(environ, start_response)
    if not sent:
        _close(body)
        raise RuntimeError(
            f"The response {response!r} returned by an after_this_request callback did not call "
            "start_response() when called as a WSGI application, so it cannot be sent."
        )
    status, headers = sent
    if type(response).__call__ is Response.__call__:
        own = iter([value for name, value in response.headerlist if name.lower() == "location"])
        headers = [(n, next(own, v)) if n.lower() == "location" else (n, v) for n, v in headers]
    return build_response(status, list(headers), body)


def _no_write(data: bytes) -> None:
    raise RuntimeError(
        "A response returned by an after_this_request callback called write(); yield its body."
    )


def _close(iterable: object) -> None:
    close = getattr(iterable, "close", None)
    if close is not None:
        close()


def outgoing(
    status: str, headers: Headers, environ: WSGIEnvironment, app_headers: Headers
) -> tuple[str, Headers, bool]:
    """The status and header list that go to the server, and whether the body must be left out.

    RFC 9110: no body on HEAD, 1xx, 204 or 304, whatever a callback left there (servers send what
    they are given, and a keep-alive client would read it as the next response). No
    ``Content-Length`` on 1xx and 204; on 304 and HEAD only the application's own (the length a
    GET would have): one WebOb computed from another body is not. A header list equal to the
    application's goes out as the application's own list.
    """
    code = status[:3]
    bodiless = code in _BODILESS or environ.get("REQUEST_METHOD") == "HEAD"
    if bodiless:
        keep = [] if code in _NO_LENGTH else [item for item in app_headers if _is_length(item)]
        headers = [item for item in headers if not _is_length(item) or item in keep]
    if headers == app_headers:
        return status, app_headers, bodiless
    return status, list(headers), bodiless


_NO_LENGTH = frozenset([*map(str, range(100, 200)), "204"])
_BODILESS = _NO_LENGTH | {"304"}


def _is_length(item: tuple[str, str]) -> bool:
    return item[0].lower() == "content-length"
