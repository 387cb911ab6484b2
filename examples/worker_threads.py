"""Worker threads: register callbacks from code that runs in another thread.

A thread does not inherit the request's context, so ``after_this_request`` called
there does not find the request on its own (``NoActiveRequest``). Either pass the
request's environ, or run the work in a copy of the request's context. Either way,
register before the application returns its response: wait for the work first.
"""

import contextvars
from concurrent.futures import ThreadPoolExecutor

from deferware import DeferMiddleware, after_this_request

executor = ThreadPoolExecutor(max_workers=4)


def render_report(environ):
    # Knows the environ: register with environ=.
    @after_this_request(environ=environ)
    def do_not_store(response):
        response.cache_control.no_store = True

    return b"quarterly report\n"


def audit():
    # Runs in a copy of the request's context: the plain form works.
    @after_this_request
    def mark_audited(response):
        response.headers["X-Audited"] = "yes"


def app(environ, start_response):
    body = executor.submit(render_report, environ).result()
    executor.submit(contextvars.copy_context().run, audit).result()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


application = DeferMiddleware(app)
