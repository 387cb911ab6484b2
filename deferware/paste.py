"""PasteDeploy integration: the ``paste.filter_factory`` entry point.

Registered as ``egg:deferware`` (entry point name ``main``), so an ini file can
put deferware in front of any application::

    [filter:deferware]
    use = egg:deferware
    on_callback_error = log

Options are parsed strictly by :mod:`deferware.options` when the file is loaded,
so a typo fails at start-up, not on the first request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .middleware import DeferMiddleware
from .options import from_ini

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["filter_factory"]


def filter_factory(
    global_conf: dict[str, str], **local_conf: str
) -> Callable[[WSGIApplication], DeferMiddleware]:
    """Return a filter that wraps an application in :class:`DeferMiddleware`."""
    options: dict[str, Any] = from_ini(local_conf, global_conf)  # values checked by the table

    def make_filter(app: WSGIApplication) -> DeferMiddleware:
        return DeferMiddleware(app, **options)

    return make_filter
