"""deferware: change a response that does not exist yet, in any WSGI application.

Wrap the application in :class:`DeferMiddleware`; anywhere during a request,
register ``after_this_request(func)`` to have ``func(response)`` called with the
response (a ``webob.Response``) before the server sees it, and
``call_on_close(func)`` to run ``func()`` once the response has been sent.
"""

from __future__ import annotations

from .api import CloseCallback, ResponseCallback, after_this_request, call_on_close, request_active
from .exceptions import InvalidHeader, NoActiveRequest, ResponseAlreadyStarted
from .middleware import DeferMiddleware
from .registry import ENVIRON_KEY

__all__ = [
    "ENVIRON_KEY",
    "CloseCallback",
    "DeferMiddleware",
    "InvalidHeader",
    "NoActiveRequest",
    "ResponseAlreadyStarted",
    "ResponseCallback",
    "after_this_request",
    "call_on_close",
    "request_active",
]

__version__ = "1.0.0"
