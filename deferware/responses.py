"""WebOb glue: building the ``webob.Response`` callbacks see, and checking what
they leave in it before it reaches the server.

``webob.Response(status=..., headerlist=..., app_iter=...)`` costs microseconds,
mostly in its status setter, which tries ``int(status)`` and takes the
exception path for every ``"200 OK"``. The status and headers here come
straight from ``start_response`` and are re-emitted as they are, so
:func:`build_response` sets the instance state that constructor would set,
directly. That relies on WebOb internals, so it is checked once at import
against the public constructor (falling back to it on any difference) and
pinned by a test comparing the two on WebOb's public behaviour.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable

from webob import Response

from .exceptions import InvalidHeader

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse  # noqa: F401

__all__ = ["FAST_BUILD", "CheckedHeaders", "build_response", "check_response", "describe"]

_new = Response.__new__


def _public_response(status: str, headerlist: list[tuple[str, str]], app_iter: Iterable[bytes]) -> Response:
    return Response(status=status, headerlist=headerlist, app_iter=app_iter)


def _fast_response(status: str, headerlist: list[tuple[str, str]], app_iter: Iterable[bytes]) -> Response:
    response = _new(Response)
    # Exactly the attributes Response.__init__ sets for (status, headerlist,
    # app_iter). Plain attribute stores: cheaper than going through __dict__.
    # WebOb's status and headerlist getters return _status and _headerlist as
    # they are; the middleware reads those two back (see DeferMiddleware._finish).
    response._status = status  # type: ignore[attr-defined]
    response._headers = None  # type: ignore[attr-defined]
    response._headerlist = headerlist  # type: ignore[attr-defined]
    response.conditional_response = False
    response._app_iter = app_iter  # type: ignore[attr-defined]
    return response


def _fast_path_matches() -> bool:
    """True if the shortcut yields the same instance state as WebOb's constructor."""
    args = ("404 Not Found", [("Content-Type", "text/plain")], [b"x"])
    try:
        return vars(_fast_response(*args)) == vars(_public_response(*args))
    except Exception:  # noqa: BLE001 # pragma: no cover - only on a WebOb that changed shape
        return False


#: Builds the ``webob.Response`` callbacks see, sharing (not copying) the
#: header list and iterable the application produced.
build_response = _fast_response if _fast_path_matches() else _public_response
#: True when :func:`build_response` is the shortcut (the middleware inlines it then).
FAST_BUILD = build_response is _fast_response

# RFC 9110 token characters for names; values: visible latin-1 plus space and tab.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[^\t\x20-\x7e\x80-\xff]")
# Header names already known to be tokens: the common names, and the names
# callbacks set, added once the regular expression accepted them (a set lookup
# is a fifth of a regex match). Bounded, so that names made up per request
# cannot grow it without end; adding is atomic under the GIL.
_KNOWN_NAMES = set(
    (
        "Set-Cookie",
        "Content-Type",
        "Content-Length",
        "Location",
        "Cache-Control",
        "Vary",
        "ETag",
        "Last-Modified",
        "Expires",
        "Content-Language",
        "Content-Encoding",
        "Content-Disposition",
        "X-Frame-Options",
        "X-Content-Type-Options",
        "Strict-Transport-Security",
        "Content-Security-Policy",
        "Referrer-Policy",
    )
)
_KNOWN_NAMES_MAX = 1024
_WHOLE = slice(None)
_STATUS = re.compile(r"[1-9][0-9]{2} [\t\x20-\x7e\x80-\xff]*")


def describe(func: Any) -> str:
    """A short, readable name for a callback in error messages."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    module = getattr(func, "__module__", None)
    if name:
        return f"{module}.{name}" if module else str(name)
    return repr(func)


_ENCODE = "remove the character or encode the value (e.g. percent-encode it)"


def _to_str(name: str, value: object) -> str:
    """How to turn a header *value* that is not a str into one (or to leave it out)."""
    if value is None:
        return f"leave the header out to send none (del response.headers[{name!r}]), or give a str"
    if isinstance(value, (bytes, bytearray)):
        # str(b"x") would send the text "b'x'"; a header's bytes are latin-1 (PEP 3333).
        return f"decode it (e.g. {value!r}.decode('latin-1'))"
    return f"convert the value to str (e.g. str({value!r}))"


def _header_problem(item: Any) -> tuple[str, str] | None:
    """What is wrong with *item* as a response header, and the fix; None if nothing."""
    if type(item) is not tuple or len(item) != 2:
        return f"header {item!r} is not a (name, value) tuple", "add a (name, value) tuple of str"
    name, value = item
    if type(name) is not str or _TOKEN.fullmatch(name) is None:
        return (
            f"header name {name!r} is not an HTTP token (letters, digits, !#$%&'*+-.^_`|~)",
            "use a name made of those characters only",
        )
    if type(value) is not str:
        problem = f"header {name!r} has a {type(value).__name__} value {value!r}; values must be str"
        return problem, _to_str(name, value)
    bad = _BAD_VALUE.search(value)
    if bad is not None:
        return (
            f"header {name!r} has the value {value!r}, whose character {bad.group()!r} "
            "is not allowed (CR, LF, NUL and other control characters split the "
            "response; characters beyond latin-1 cannot be sent)",
            _ENCODE,
        )
    return None


def _refuse(owner: Any, item: Any) -> None:
    """Raise :class:`InvalidHeader` for *item* unless it is a safe header.

    The common case (an ASCII value without control characters, under a name
    seen before) is decided by str methods, in C; anything else, tabs and
    latin-1 values included, by the precise checks in ``_header_problem``.
    """
    if type(item) is tuple and len(item) == 2:
        name, value = item
        if type(value) is str and value.isascii() and value.isprintable() and type(name) is str:
            if name in _KNOWN_NAMES:
                return
            if _TOKEN.fullmatch(name):
                if len(_KNOWN_NAMES) < _KNOWN_NAMES_MAX:
                    _KNOWN_NAMES.add(name)
                return
    found = _header_problem(item)
    if found is not None:
        problem, fix = found
        raise InvalidHeader(
            f"after_this_request callback {describe(owner)} set an unsafe response "
            f"header: {problem}. Nothing was sent; {fix}."
        )


class CheckedHeaders(list):  # type: ignore[type-arg]
    """The header list callbacks see: it refuses an unsafe header as it is added.

    Checking on the way in costs one check per added header (rather than one per
    header per callback), and the :class:`InvalidHeader` is raised inside the
    callback, at the line that set the header. WebOb adds headers only with
    ``append`` and ``extend``; the other mutators are covered too. ``owner``
    is the callback running now, for the message.

    ``changed`` is set by every mutator (every method of ``list`` that changes
    it is overridden here), so that a header list no callback touched can be
    handed to the server as the application's own list instead of a copy.
    Whoever makes a ``CheckedHeaders`` sets both attributes.
    """

    __slots__ = ("changed", "owner")
    owner: Any
    changed: bool

    def append(self, item: Any) -> None:
        _refuse(self.owner, item)
        self.changed = True
        list.append(self, item)

    def extend(self, items: Iterable[Any]) -> None:
        items = list(items)
        for item in items:
            _refuse(self.owner, item)
        self.changed = True
        list.extend(self, items)

    def insert(self, index: Any, item: Any) -> None:
        _refuse(self.owner, item)
        self.changed = True
        list.insert(self, index, item)

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            # WebOb's ``headers[name] = value`` rewrites the whole list through a
            # slice, ``items[:] = [the entries it keeps]``, each kept entry an
            # equal tuple rebuilt, then appends the new entry. Setting a header
            # the response does not have yet keeps every entry: that rewrite
            # changes nothing, and one comparison in C says so.
            if type(value) is not list:
                value = list(value)  # iterated twice below
            elif index == _WHOLE and value == self:
                return
            # Entries equal to one already in the list were checked when that
            # one was added (or are the application's own): only the others
            # are checked, found by set operations in C.
            try:
                present = set(self)
                if not present.issuperset(value):
                    for item in value:
                        if item not in present:
                            _refuse(self.owner, item)
            except TypeError:  # an unhashable entry: check every one
                for item in value:
                    _refuse(self.owner, item)
        else:
            _refuse(self.owner, value)
        self.changed = True
        list.__setitem__(self, index, value)

    def __iadd__(self, items: Iterable[Any]) -> CheckedHeaders:  # type: ignore[misc]
        self.extend(items)
        return self

    # The mutators that only remove or reorder: nothing to check, but a change.

    def __delitem__(self, index: Any) -> None:
        self.changed = True
        list.__delitem__(self, index)

    def __imul__(self, count: Any) -> CheckedHeaders:  # type: ignore[misc]
        self.changed = True
        return list.__imul__(self, count)

    def pop(self, index: Any = -1) -> Any:
        self.changed = True
        return list.pop(self, index)

    def remove(self, item: Any) -> None:
        self.changed = True
        list.remove(self, item)

    def clear(self) -> None:
        self.changed = True
        list.clear(self)

    def sort(self, *args: Any, **kwargs: Any) -> None:
        self.changed = True
        list.sort(self, *args, **kwargs)

    def reverse(self) -> None:
        self.changed = True
        list.reverse(self)


def check_response(
    response: Response, func: Any, trusted: dict[int, object], originals: Iterable[object]
) -> None:
    """After *func* ran: raise :class:`InvalidHeader` if it left an unsafe status
    or header behind, by a way :class:`CheckedHeaders` does not see (a new
    header list, a new response). Then make its header list a checked one.

    *trusted* maps ``id()`` to objects already accepted, holding them so that
    their ids cannot be reused; *originals* are the application's own header
    tuples: its own business, passed through as they would be without deferware.
    """
    status = response.status
    if id(status) not in trusted:
        if type(status) is not str or _STATUS.fullmatch(status) is None:
            raise InvalidHeader(
                f"after_this_request callback {describe(func)} set the status {status!r}, "
                "which is not a 3-digit code, a space and a reason phrase without "
                "control characters. Set response.status_code or a plain status string."
            )
        trusted[id(status)] = status
    headerlist = response.headerlist
    if type(headerlist) is CheckedHeaders:
        return
    trusted.update((id(item), item) for item in originals)
    for item in headerlist:
        if id(item) not in trusted:
            _refuse(func, item)
    checked = CheckedHeaders(headerlist)
    checked.owner = func
    checked.changed = True  # not the application's list
    response.headerlist = checked
