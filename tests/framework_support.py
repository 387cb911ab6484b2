"""Shared by the framework tests: a stand-in ``wsgi.file_wrapper`` a test can
spot, a test environ, and a server-like call that records ``start_response``."""

from __future__ import annotations

import wsgiref.util
from typing import ClassVar


class MarkerFileWrapper:
    """Stands in for a server's ``wsgi.file_wrapper`` so a test can spot it."""

    instances: ClassVar[list[MarkerFileWrapper]] = []

    def __init__(self, filelike, blksize=8192):
        self.instances.append(self)
        self.filelike = filelike
        self.blksize = blksize
        self.closed = False

    def __iter__(self):
        while chunk := self.filelike.read(self.blksize):
            yield chunk

    def close(self):
        self.closed = True
        self.filelike.close()


def make_environ(path, **extra):
    environ = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = ""
    environ.update(extra)
    return environ


def serve(app, environ):
    """Call *app* as a server would; return its iterable and what start_response got."""
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = status
        seen["headers"] = headers
        return seen.setdefault("written", []).append

    return app(environ, start_response), seen
