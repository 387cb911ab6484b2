"""The callback loop: runs a request's ``after_this_request`` callbacks on its
response, with the error policy, then the rules for what goes out. Shared by
``DeferMiddleware``, ``deferware.testing`` and ``deferware.django``, so that all
apply the same rules.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable

from webob import Response

from .iterators import RequestBody
from .registry import Registry
from .responses import Headers, checked, describe, outgoing, send_itself

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["run_callbacks"]

logger = logging.getLogger("deferware")

Outcome = tuple[Response, str, Headers]


def run_callbacks(
    registry: Registry,
    response: Response,
    environ: WSGIEnvironment,
    dropped: list[Iterable[bytes]],
    log_errors: bool,
    status: str,
    headers: Headers,
) -> tuple[Response, str, Headers, Iterable[bytes]]:
    """Run *registry*'s callbacks in order on *response*; return the final response, and the
    status, header list and body that go out.

    Each callback gets the response the previous one left or returned; one registered meanwhile
    runs too. What each leaves is checked (:func:`~deferware.responses.checked`), from the
    application's *status* and *headers*. With *log_errors*, one that raises is logged and undone
    (:func:`_run_logged`). Then a ``conditional_response`` answers as WebOb's would, and no body
    goes out on HEAD, 1xx, 204 or 304. Bodies left behind are appended to *dropped*, to close.
    """
    app_headers, run = headers, _run_logged if log_errors else _run
    ran: list[Any] | None = [] if logger.isEnabledFor(logging.DEBUG) else None  # opt-in: see below
    try:
        while batch := registry.take_callbacks():
            if ran is not None:
                ran.extend(batch)
            for func in batch:
                response, status, headers = run(func, response, status, headers, registry, environ, dropped)
        if response.conditional_response:
            response = _conditional(response, headers, registry, environ, dropped)
            status, headers = response.status, response.headerlist
        status, headers, bodiless = outgoing(status, headers, environ, app_headers)
    except BaseException:
        dropped.append(response.app_iter)  # the body of the response reached so far: closed too
        raise
    if ran is not None:  # the "deferware" logger at DEBUG: a line per request
        logger.debug("%s: ran after_this_request callbacks %s", _request(environ), [describe(f) for f in ran])
    body = response.app_iter
    if bodiless:  # no body may go out: what is there is closed, not sent
        dropped.append(body)
        body = []
    return response, status, headers, body


def _conditional(
    response: Response, headers: Headers, registry: Registry, environ: WSGIEnvironment, dropped: list[Any]
) -> Response:
    """*response* answered as a ``conditional_response`` (304, 206, 416). Its body goes to
    *dropped*, to close, behind a wrapper that closes it once: WebOb closes it itself on 416."""
    dropped.append(_closed_once(response, headers, registry, environ))
    return send_itself(response, environ)


def _closed_once(
    response: Response, headers: Headers, registry: Registry, environ: WSGIEnvironment
) -> Iterable[bytes]:
    """*response*'s body, put behind a :class:`RequestBody` unless it is a list or one already:
    that counts its pulls and closes it once, whoever closes it."""
    body = response.app_iter
    if not isinstance(body, (list, tuple, RequestBody)):
        response.app_iter = body = RequestBody(body, registry, environ)
        response.headerlist[:] = headers  # WebOb drops the Content-Length here: put it back
    return body


def _request(environ: WSGIEnvironment) -> str:
    return f"{environ.get('REQUEST_METHOD', '?')} {environ.get('PATH_INFO', '')!r}"


def _run(
    func: Any,
    response: Response,
    status: str,
    headers: Headers,
    registry: Registry,
    environ: WSGIEnvironment,
    dropped: list[Any],
) -> Outcome:
    """Run one callback; take its replacement, if any; check what it left."""
    result = func(response)
    if result is not None:
        response = _replacement(func, response, result, environ, dropped)
    if response.status != status or response.headerlist != headers:
        status, headers = checked(func, response, status, headers)
    return response, status, headers


def _replacement(
    func: Any, response: Response, result: object, environ: WSGIEnvironment, dropped: list[Any]
) -> Response:
    """The response that *result*, returned by *func*, puts in *response*'s place."""
    if not isinstance(result, Response):
        raise _bad_return(func, result)
    if result is not response:
        # Every body a response had is closed at the end, once: the one
        # replaced, and the replacement's own, should a later step fail.
        dropped.append(response.app_iter)
        dropped.append(result.app_iter)
        response = result
    if type(response).__call__ is not Response.__call__:
        # An HTTP exception builds its page when sent: sent here, inside
        # this callback's turn, so that its errors fall under the policy too.
        dropped.append(response.app_iter)
        response = send_itself(response, environ)
        dropped.append(response.app_iter)
    return response


def _run_logged(
    func: Any,
    response: Response,
    status: str,
    headers: Headers,
    registry: Registry,
    environ: WSGIEnvironment,
    dropped: list[Any],
) -> Outcome:
    """Run one callback under ``on_callback_error="log"``: on error, its status, header list and
    body (the reference, and a list body's items) are put back. A streaming body it advanced
    cannot be (its chunks are gone): that error propagates, as sending the rest would lose data."""
    body = _closed_once(response, headers, registry, environ)  # a body a callback set: counted
    pulled = body.pulled if isinstance(body, RequestBody) else 0
    items = list(body) if type(body) is list else None
    conditional = response.conditional_response
    try:
        return _run(func, response, status, headers, registry, environ, dropped)
    except Exception:
        if isinstance(body, RequestBody) and body.pulled != pulled:
            raise
        message = "%s: after_this_request callback %s raised; the response goes on as it was before it (%s)."
        logger.exception(message, _request(environ), describe(func), "on_callback_error='log'")
    if response.app_iter is not body:
        dropped.append(response.app_iter)
        response.app_iter = body
    if items is not None:
        body[:] = items  # type: ignore[index]
    response.headerlist = list(headers)  # a copy: *headers* must stay as checked
    response.status = status
    response.conditional_response = conditional
    return response, status, headers


def _bad_return(func: Any, result: object) -> TypeError:
    hint = ""
    if hasattr(result, "__await__"):
        getattr(result, "close", lambda: None)()  # a coroutine nobody will await
        hint = " It returned an awaitable: register a plain (def) function, not an async one."
    return TypeError(
        f"after_this_request callback {describe(func)} returned a {type(result).__module__}."
        f"{type(result).__qualname__}; a callback must return None (to keep the response it was "
        f"given, possibly changed) or a webob.Response (to replace it).{hint}"
    )
