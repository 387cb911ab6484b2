"""``DeferMiddleware``: runs the request's registered callbacks on its response.

The path through :meth:`DeferMiddleware.__call__`:

1. Put a fresh :class:`~deferware.registry.Registry` in the environ and bind it
   in the context; call the application with a ``start_response`` that only
   records the status and headers, and a ``write()`` that buffers.
2. If the application started lazily (``start_response`` from inside its
   generator), pull chunks until it has called ``start_response``.
3. Nothing registered and nothing written: hand the recorded status, header
   list and the application's own iterable to the server. No WebOb object is
   built; this is the path every request without callbacks takes.
4. Otherwise build a ``webob.Response`` over the (unbuffered) body, run the
   callbacks in order, check what they left, and hand the final status,
   header list and iterable to the server directly, not through
   ``Response.__call__`` (which rewrites a relative ``Location`` and handles HEAD
   itself). A :class:`~deferware.iterators.ClosingIterable` closes every
   iterable exactly once and then runs the close callbacks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, cast

from webob import Response

from .iterators import AppBody, ClosingIterable, prime, run_close_callbacks
from .options import from_keywords
from .registry import (
    _SEAL,
    CLOSED,
    ENVIRON_KEY,
    FAILED,
    FINISHED,
    FINISHING,
    HANDED_OVER,
    HOOKED,
    OPEN,
    REFUSE_CALLBACKS,
    WRITTEN,
    Registry,
    _pulling,
    current_registry,
)
from .responses import FAST_BUILD, CheckedHeaders, build_response, check_response, describe

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["DeferMiddleware"]

logger = logging.getLogger("deferware")


#: The values of ``on_callback_error`` (checked at run time too, by the option table).
OnCallbackError = Literal["raise", "log"]

#: Stands in for a list of ``DeferMiddleware._finish`` until one is needed (most
#: requests need none, and a list made per request is measurable there).
_NO_LIST: Any = ()

_new_response = Response.__new__

# The context variable's methods, bound once: every request calls both.
_bind = current_registry.set
_unbind = current_registry.reset


class _Exchange(Registry):
    """The registry plus what ``start_response`` and ``write()`` recorded."""

    __slots__ = ("head", "headers", "server_start_response", "server_write", "status")

    # The fields are set in DeferMiddleware.__call__, not by Registry.__init__:
    # its Python frame would be a tenth of the idle path's cost. object.__init__
    # keeps ``_Exchange()`` entirely in C (cheaper than ``object.__new__(_Exchange)``).
    __init__ = object.__init__

    status: str | None
    headers: list[tuple[str, str]]
    #: Data passed to ``write()`` and chunks pulled while priming, in order.
    head: list[bytes]
    server_write: Callable[[bytes], object] | None
    #: The server's start_response, once the status and headers were handed to it.
    server_start_response: StartResponse | None

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> _Exchange:
        if exc_info is not None:
            try:
                if self.phase >= HANDED_OVER:
                    # The server has the status and headers, but may not have sent
                    # them yet (no body byte went out): PEP 3333 leaves it to the
                    # server to replace them, or to re-raise if they were sent.
                    server_start_response = getattr(self, "server_start_response", None)
                    if server_start_response is not None:
                        self.server_write = server_start_response(status, headers, exc_info)
                        return self
                if self.phase:
                    # PEP 3333: after write() (the headers count as sent), or while
                    # callbacks run on the response, an error can no longer
                    # replace the status and headers: re-raise it.
                    raise exc_info[1].with_traceback(exc_info[2])  # type: ignore[union-attr]
            finally:
                exc_info = None  # break the traceback reference cycle
        elif self.status is not None:
            raise AssertionError(
                "start_response() was called a second time without exc_info; PEP 3333 "
                "allows a second call only with exc_info, to replace an error response."
            )
        self.status = status
        self.headers = headers
        return self  # the write() callable: see __call__

    def write(self, data: bytes) -> object:
        if self.phase >= HANDED_OVER:
            server_write = getattr(self, "server_write", None)
            if server_write is None:  # pragma: no cover - a server that broke PEP 3333
                raise RuntimeError(
                    "write() was called after the response was handed over, "
                    "but the server gave no write() callable."
                )
            return server_write(data)
        if self.status is None:
            raise AssertionError("write() was called before start_response() (PEP 3333).")
        if self.phase == FINISHING:
            # The application's iterable, pulled by a callback reading the body,
            # called write(): that data has no place in the body being read.
            raise RuntimeError(
                "write() was called while an after_this_request callback was reading the "
                "response body, so its data cannot be put in order. Yield the data from "
                "the application's iterable instead of passing it to write()."
            )
        self.phase = WRITTEN
        self.buffer().append(data)
        return None

    # The exchange itself is the write() callable start_response returns:
    # returning it allocates nothing, where a bound method ``self.write``
    # would be made (and freed) on every request, used or not.
    __call__ = write

    def buffer(self) -> list[bytes]:
        """The list of chunks that go out before the iterable's remaining items."""
        try:
            return self.head
        except AttributeError:
            self.head = []
            return self.head


class DeferMiddleware:
    """WSGI middleware that applies ``after_this_request`` callbacks and runs
    ``call_on_close`` callbacks for the application it wraps.

    :param app: any WSGI application (Django, Pyramid, Flask, Bottle, plain).
    :param on_callback_error: ``"raise"`` (default): an exception from an
        ``after_this_request`` callback propagates, after the application's
        iterable was closed and the close callbacks ran. ``"log"``: it is logged
        on the ``"deferware"`` logger and the response goes on as it was before
        that callback (its changes to status, headers and body are rolled back).

    Example::

        from deferware import DeferMiddleware
        application = DeferMiddleware(application)

    A request with nothing registered passes through untouched: the same status,
    the same header list and the application's own iterable (so
    ``wsgi.file_wrapper`` keeps working), with no WebOb object built. A
    ``DeferMiddleware`` nested inside another one (a sub-request, or the same
    app wrapped twice) gets its own registry; the outer one is put back after.
    """

    def __init__(self, app: WSGIApplication, *, on_callback_error: OnCallbackError = "raise") -> None:
        if isinstance(app, dict):  # not printed: it may be long, and hold secrets
            raise TypeError(
                "DeferMiddleware needs a WSGI application (a callable), got a dict. From an "
                "ini file, that dict is PasteDeploy's global configuration: DeferMiddleware is "
                "the middleware, not a PasteDeploy factory. Write 'use = egg:deferware' in the "
                "[filter:...] section instead."
            )
        if not callable(app):
            raise TypeError(f"DeferMiddleware needs a WSGI application (a callable), got {app!r}.")
        self.app = app
        self.options = from_keywords(on_callback_error=on_callback_error)
        self._log_errors = self.options["on_callback_error"] == "log"

    def __repr__(self) -> str:
        return f"DeferMiddleware({self.app!r}, on_callback_error={self.options['on_callback_error']!r})"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # A DeferMiddleware nested in another one (a sub-request, or the same
        # app wrapped twice) gets its own registry; the outer one is put back.
        outer = environ.get(ENVIRON_KEY)
        if outer is not None and getattr(outer, "phase", OPEN) > FINISHING and not _streaming_here(outer):
            outer = None  # a finished request's (an environ used again), not an enclosing one
        exchange = _Exchange()  # fields set here, see _Exchange
        callbacks: list[Any] = []
        close_callbacks: list[Any] = []
        exchange.callbacks = callbacks
        exchange.close_callbacks = close_callbacks
        exchange.phase = OPEN
        exchange.status = None
        environ[ENVIRON_KEY] = exchange
        token = _bind(exchange)
        try:
            try:
                app_iter = self.app(environ, exchange.start_response)
            except BaseException:
                _drop(exchange, ())
                raise
            if callbacks or close_callbacks or exchange.phase or exchange.status is None:
                return self._finish(exchange, app_iter, start_response, environ)
            # The idle path. Seal, then make sure no registration from another
            # thread slipped in between the check above and the seal.
            exchange.phase = HANDED_OVER
            callbacks.append(_SEAL)
            close_callbacks.append(_SEAL)
            if callbacks[0] is not _SEAL or close_callbacks[0] is not _SEAL:  # pragma: no cover
                return self._finish(exchange, app_iter, start_response, environ)
        finally:
            _unbind(token)
            if outer is not None:
                environ[ENVIRON_KEY] = outer
            elif exchange.phase == HANDED_OVER:
                environ[ENVIRON_KEY] = FINISHED  # see registry.finished_registry
        try:
            exchange.server_start_response = start_response
            exchange.server_write = start_response(exchange.status, exchange.headers)
        except BaseException:
            _close_quietly(app_iter)
            raise
        return app_iter

    def _finish(
        self,
        exchange: _Exchange,
        app_iter: Iterable[bytes],
        start_response: StartResponse,
        environ: WSGIEnvironment,
    ) -> Iterable[bytes]:
        """Everything but the idle path; runs with the request active in the context.

        Kept flat on purpose: with one callback this is the whole cost of
        deferware, and every extra Python call here is measurable.
        """
        body: Iterable[bytes] = app_iter
        final: Iterable[bytes] = app_iter
        # The iterables of responses a callback replaced or a rollback undid,
        # closed with the rest (_NO_LIST until there is one).
        dropped: list[Iterable[bytes]] = _NO_LIST
        log_errors = self._log_errors
        response: Response | None = None
        try:
            if (
                exchange.status is None
                or exchange.phase
                or log_errors
                or (type(app_iter) is not list and hasattr(app_iter, "close"))
            ):
                body = final = self._body(exchange, app_iter)
            elif isinstance(app_iter, list):
                # WebOb's response.write() appends to a list body in place: the
                # response gets a (plain) copy, not the application's list, which
                # may be a constant it serves to every request.
                body = final = list.copy(app_iter)
            status: str = exchange.status  # type: ignore[assignment] # set: primed above if it was not
            headers = exchange.headers

            callbacks = exchange.callbacks
            exchange.phase = FINISHING
            checked: Any  # the response's CheckedHeaders, once it is built
            # 'log' policy: the bodies that record what callbacks read (see _apply_logged).
            recorders = [cast(AppBody, body)] if log_errors else _NO_LIST
            known_status = status
            ran = 0
            if not callbacks:
                callbacks.append(_SEAL)
            # A list iterator also yields the entries appended while it runs: a
            # callback registering another one, or a registration racing in from
            # another thread. The seal goes in once the last entry ran; entries
            # that land before it still run, any after it were refused.
            for func in callbacks:
                if func is _SEAL:
                    break
                ran += 1
                if response is None:
                    checked = CheckedHeaders(headers)
                    checked.changed = False
                    if FAST_BUILD:
                        # responses.build_response, inlined: the call alone is 4 % of
                        # the cost of one callback. The same attributes; a test compares
                        # the response callbacks get with WebOb's constructor's.
                        response = _new_response(Response)
                        response._status = status  # type: ignore[attr-defined]
                        response._headers = None  # type: ignore[attr-defined]
                        response._headerlist = checked  # type: ignore[attr-defined]
                        response.conditional_response = False
                        response._app_iter = body  # type: ignore[attr-defined]
                    else:  # pragma: no cover - a WebOb that changed shape
                        response = build_response(status, checked, body)
                checked.owner = func
                if log_errors:
                    if dropped is _NO_LIST:
                        dropped = []
                    response = self._apply_logged(func, response, headers, dropped, recorders)
                    checked = response.headerlist
                    known_status = response.status
                else:
                    result = func(response)
                    # Did the callback replace the response, its status or its header
                    # list (rather than change the CheckedHeaders in place)? Decided on
                    # the attributes behind WebOb's status and headerlist getters: a
                    # fifth of the cost of the two property calls. A test pins that
                    # they track the properties; a WebOb without them is always checked.
                    try:
                        replaced = (
                            result is not None
                            or response._headerlist is not checked  # type: ignore[attr-defined]
                            or response._status is not known_status  # type: ignore[attr-defined]
                        )
                    except AttributeError:  # pragma: no cover - a WebOb that changed shape
                        replaced = True
                    if replaced:
                        if result is not None:
                            if dropped is _NO_LIST:
                                dropped = []
                            response = _replacement(func, response, result, dropped)
                        check_response(response, func, {id(known_status): known_status}, headers)
                        checked = response.headerlist
                        known_status = response.status
                if ran == len(callbacks):
                    callbacks.append(_SEAL)
            if response is not None:
                if dropped and type(response).__call__ is not Response.__call__:
                    # A replacement that finishes itself when called (webob.exc and
                    # Pyramid HTTP exceptions build their body in __call__).
                    response = _as_sent(response, environ, dropped, checked.owner)
                    checked = response.headerlist
                    known_status = response.status
                # known_status and checked are the response's, as of the last callback.
                status = known_status
                if checked.changed:  # else the application's own list goes out, as it came
                    headers = checked[:]  # PEP 3333: a real list (a slice of a list subclass is one)
                try:
                    final = response._app_iter  # type: ignore[attr-defined] # as read above
                except AttributeError:  # pragma: no cover - a WebOb that changed shape
                    final = response.app_iter
                if environ.get("REQUEST_METHOD") == "HEAD" and (
                    # A callback set the body, or wrote to our copy of a list body in place.
                    final is not body or (type(body) is list and body != app_iter)
                ):
                    # HTTP forbids a body in the answer to HEAD, and servers send
                    # what they are given: a body a callback set or wrote to stays
                    # here (and is closed with the rest, as is the application's).
                    if dropped is _NO_LIST:
                        dropped = []
                    dropped.append(final)
                    final = []
                    headers = _head_length(headers, exchange.headers)
            if log_errors:  # stop recording body reads: the server streams it
                for recorder in recorders:
                    recorder.stop_recording()

            close_callbacks = exchange.close_callbacks
            outgoing: Iterable[bytes] | None = None
            if final is body and not dropped and not close_callbacks:
                exchange.phase = HANDED_OVER
                close_callbacks.append(_SEAL)
                if close_callbacks[0] is _SEAL:  # else a close callback raced in: hook
                    outgoing = body
                    if type(body) is AppBody and body.untouched:
                        outgoing = app_iter  # the AppBody was not needed after all
            if outgoing is None:
                # The environ keeps this registry until the server lets go of the
                # response (and may outlive it): drop the callbacks that ran, and
                # refuse later ones without storing them. (On the path above the
                # environ gets FINISHED instead, see __call__.)
                exchange.callbacks = REFUSE_CALLBACKS
                closers = [
                    close
                    for item in _unique(final, *dropped, body)
                    if (close := getattr(item, "close", None))
                ]
                exchange.phase = HOOKED
                outgoing = ClosingIterable(final, closers, exchange, not isinstance(final, AppBody))
            exchange.server_start_response = start_response
            exchange.server_write = start_response(status, headers)
            return outgoing
        except BaseException:
            # Also the body of the response as the failing step left it: a
            # callback's replacement, or an app_iter a callback set.
            current = None if response is None else response.app_iter
            _drop(exchange, _unique(final, *dropped, body, current))
            raise

    def _body(self, exchange: _Exchange, app_iter: Iterable[bytes]) -> AppBody:
        """The body the response is built over, when the application's iterable
        cannot be used as it is: a lazy start (primed here), data passed to
        ``write()``, an iterable with ``close()`` (which WebOb may call, and
        which must still run exactly once), or the ``'log'`` policy (which
        records what callbacks read). ``_finish`` calls it only in those cases."""
        iterator = None
        if exchange.status is None:
            iterator = self._prime(exchange, app_iter)
        head = exchange.head if exchange.phase == WRITTEN or iterator is not None else None
        body = AppBody(app_iter, head, iterator, exchange)
        if self._log_errors:
            body.consumed = []  # so that a failed callback's body read can be undone
        return body

    def _prime(self, exchange: _Exchange, app_iter: Iterable[bytes]) -> Iterator[bytes]:
        """Start a lazy application: pull chunks until it called start_response."""
        iterator = prime(app_iter, exchange, exchange.buffer())
        if exchange.status is None:
            raise RuntimeError(
                f"The WSGI application {self.app!r} returned an iterable that ended "
                "without calling start_response(). Every WSGI application must "
                "call start_response (PEP 3333)."
            )
        return iterator

    def _apply_logged(
        self,
        func: Any,
        response: Response,
        originals: list[tuple[str, str]],
        dropped: list[Iterable[bytes]],
        recorders: list[AppBody],
    ) -> Response:
        """Run one callback under ``on_callback_error='log'``: on error, log and roll back.

        *recorders* are the bodies that keep what callbacks read, so that reading
        consumes nothing: first the application's, then any added here. A failed
        callback is undone, except when the application's own iterable raised
        while the callback read it: that is the application failing, and no
        rollback gives its body back. The error propagates, as it does without
        deferware.
        """
        app_iter = response.app_iter
        if not isinstance(app_iter, (AppBody, list, tuple)):
            # A body an earlier callback set (a wrapper, a replacement's
            # iterator): it records what this callback reads, like the
            # application's. Set behind WebOb's app_iter setter, which would
            # drop a Content-Length (see responses.py on _app_iter).
            app_iter = AppBody(app_iter, None, None, None)
            app_iter.consumed = []
            recorders.append(app_iter)
            response._app_iter = app_iter  # type: ignore[attr-defined]
        # A list can be written to in place (WebOb's write() appends): keep its items.
        items = list(app_iter) if type(app_iter) is list else None
        saved = (response, response.status, list(response.headerlist), app_iter, items)
        try:
            result = func(response)
            if result is not None:
                response = _replacement(func, response, result, dropped)
            check_response(response, func, {id(saved[1]): saved[1]}, originals)
        except Exception:
            if recorders[0].failed:
                raise
            logger.exception(
                "after_this_request callback %s raised; the response goes on as it was "
                "before this callback (on_callback_error='log').",
                describe(func),
            )
            response = _roll_back(saved, response, dropped, func)
        return response


def _streaming_here(registry: Any) -> bool:
    """Whether *registry*, whose response already went to the server, is the
    request whose body (or ``close()``) is running this code: a sub-request
    made from there, with the same environ, is nested in it, and it is put back
    after. Else it is an earlier request's, in an environ used again."""
    return registry.phase == HOOKED and (current_registry.get(None) is registry or _pulling() is registry)


def _replacement(func: Any, response: Response, result: object, dropped: list[Iterable[bytes]]) -> Response:
    """Check a callback's non-None return value; the response to go on with."""
    if not isinstance(result, Response):
        raise _bad_return(func, result)
    if result is not response:
        dropped.append(response.app_iter)
    return result


def _as_sent(
    response: Response, environ: WSGIEnvironment, dropped: list[Iterable[bytes]], func: Any
) -> Response:
    """*response*, whose class overrides ``__call__``, as it sends itself.

    deferware hands status, headers and body to the server directly, not
    through ``Response.__call__``; a subclass that does work there (an HTTP
    exception generating its error page) is run as the WSGI application it is,
    and what it sends is checked like any replacement.
    """
    sent: list[Any] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Any:
        sent[:] = (status, headers)
        return _no_write

    body = response(environ, start_response)
    if not sent:  # it did not answer when called: it goes out as it is
        _close_quietly(body)
        return response
    dropped.append(response.app_iter)
    result = build_response(sent[0], list(sent[1]), body)
    check_response(result, func, {}, ())
    return result


def _no_write(data: bytes) -> None:
    raise RuntimeError(
        "A response returned by an after_this_request callback called write(); yield its body instead."
    )


def _head_length(headers: list[tuple[str, str]], originals: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers for a HEAD response whose body a callback changed.

    A Content-Length WebOb computed then counts the (empty) HEAD body plus the
    callback's change, and RFC 9110 allows only the length a GET would have,
    unknown here: it goes out only as the application sent it, else not at all.
    """

    def lengths(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [item for item in items if item[0].lower() == "content-length"]

    if lengths(headers) == lengths(originals):
        return headers
    return [item for item in headers if item[0].lower() != "content-length"]


def _unique(*iterables: Iterable[bytes] | None) -> list[Iterable[bytes]]:
    seen: list[Iterable[bytes]] = []
    for item in iterables:
        if item is not None and not any(item is other for other in seen):
            seen.append(item)
    return seen


def _close_quietly(iterable: object) -> None:
    try:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    except Exception:
        logger.exception("Closing %r raised while another error was propagating.", iterable)


def _drop(exchange: _Exchange, iterables: Iterable[Iterable[bytes]]) -> None:
    """The request failed before a response reached the server: clean up.

    Callbacks are dropped, every iterable is closed, close callbacks run; errors
    from these are logged so that the original exception propagates unchanged.
    """
    if exchange.phase < FINISHING:
        exchange.phase = FINISHING
    Registry.seal(exchange.callbacks)
    exchange.callbacks = REFUSE_CALLBACKS  # the environ keeps the registry: see registry.REFUSE_CALLBACKS
    for iterable in iterables:
        _close_quietly(iterable)
    if exchange.phase not in (CLOSED, FAILED):
        run_close_callbacks(exchange, FAILED)


def _bad_return(func: Any, result: object) -> TypeError:
    hint = ""
    close = getattr(result, "close", None)
    if hasattr(result, "__await__") and close is not None:
        close()  # a coroutine nobody will await: close it to avoid a RuntimeWarning
        hint = " It returned an awaitable: register a plain (def) function, not an async one."
    return TypeError(
        f"after_this_request callback {describe(func)} returned a "
        f"{type(result).__module__}.{type(result).__qualname__}; a callback must return "
        "None (to keep the response it was given, possibly changed) or a "
        f"webob.Response (to replace it).{hint}"
    )


def _roll_back(
    saved: tuple[Response, str, list[tuple[str, str]], Any, list[bytes] | None],
    current: Response,
    dropped: list[Iterable[bytes]],
    func: Any,
) -> Response:
    """Undo a failed callback's changes (``on_callback_error='log'``)."""
    response, status, headerlist, app_iter, items = saved
    if current is not response:
        dropped.append(current.app_iter)
    # What the callback read of an AppBody needs no undoing: reading it while
    # recording consumes nothing (see iterators._Recorder).
    if response.app_iter is not app_iter or (items is not None and app_iter != items):
        dropped.append(response.app_iter)
        if items is not None:
            app_iter = items  # the list as it was, not as the callback left it
        response.app_iter = app_iter
    checked = CheckedHeaders(headerlist)
    checked.changed = True  # a copy: not the application's list
    checked.owner = func  # as the list it replaces (a replacement may change it when sent)
    response.headerlist = checked
    response.status = status
    return response
