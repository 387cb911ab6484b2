"""The application the ini files under tests/configs/ load (``use = call:deferware_ini_apps:make_app``).

Its callbacks show which ``on_callback_error`` the loaded middleware got: a
header callback, one that raises, and another header callback.
"""

from __future__ import annotations

from deferware import after_this_request


class CallbackFailed(Exception):
    pass


def make_app(global_conf, **local_conf):
    def app(environ, start_response):
        after_this_request(lambda response: response.headers.add("X-Before", "1"))

        @after_this_request
        def failing(response):
            response.headers.add("X-Failing", "1")
            raise CallbackFailed("from the sample app")

        after_this_request(lambda response: response.headers.add("X-After", "1"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"from the ini app"]

    return app
