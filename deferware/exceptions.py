"""The exceptions deferware raises on purpose.

Every one of them derives from a built-in exception that already describes the
kind of mistake (``RuntimeError`` for "not now", ``ValueError`` for "not this
value"), so code that catches the built-in keeps working.
"""

from __future__ import annotations

__all__ = ["InvalidHeader", "NoActiveRequest", "ResponseAlreadyStarted"]


class NoActiveRequest(RuntimeError):
    """A callback was registered where no request handled by ``DeferMiddleware`` is
    active: outside any request, or with an ``environ=`` that holds no registry."""


class ResponseAlreadyStarted(RuntimeError):
    """A callback was registered too late to take effect.

    ``after_this_request`` after the status and headers were handed to the server,
    or ``call_on_close`` after the close callbacks ran (or when the response was
    handed over without a close hook). Raised instead of dropping the callback.
    """


class InvalidHeader(ValueError):
    """An ``after_this_request`` callback produced a status or header that must not
    reach the server: a control character (CR, LF, NUL, ...) that would split the
    response, a value that is not latin-1, or a name that is not an HTTP token."""
