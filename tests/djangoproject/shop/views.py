"""Views that register deferware callbacks in each of the ways a project would."""

import tempfile

from django.db import connection
from django.http import FileResponse, HttpResponse, StreamingHttpResponse

from deferware import after_this_request, call_on_close

GREETINGS = {"en": "Hello", "de": "Hallo", "fr": "Bonjour"}
_FILE = tempfile.NamedTemporaryFile(prefix="deferware-django-", suffix=".bin")
_FILE.write(b"0123456789" * 1000)
_FILE.flush()


def _mark(response):
    response.headers["X-Deferred"] = "yes"


def index(request):
    after_this_request(_mark, environ=request.META)
    return HttpResponse(GREETINGS[request.language])


def stream(request):
    def chunks():
        yield b"first\n"
        # A later chunk runs as part of the request: it may still register.
        call_on_close(lambda: None)
        yield b"second\n"

    after_this_request(_mark)
    return StreamingHttpResponse(chunks(), content_type="text/plain")


def download(request):
    after_this_request(_mark)
    return FileResponse(open(_FILE.name, "rb"), content_type="application/octet-stream")


async def async_view(request):
    after_this_request(_mark)
    return HttpResponse("async")


def boom(request):
    after_this_request(_mark)
    raise RuntimeError("the view failed")


AUDIT = []


def audit(request):
    """A close callback that uses the database after the response was sent."""

    def record():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        AUDIT.append("callback used the database")

    call_on_close(record)
    return HttpResponse("audited")


def audit_log(request):
    """What the close callback and request_finished saw, in order."""
    return HttpResponse("\n".join(AUDIT[-2:]))
