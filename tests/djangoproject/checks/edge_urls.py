"""Views for the adapter's edge cases (checks/test_adapter_edges.py)."""

import io

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.urls import path
from webob import Response

from deferware import after_this_request

CLOSED: list[object] = []


def _generated():
    yield b"replaced "
    yield b"body"


def _replace(response):
    return Response(app_iter=_generated(), content_type="text/plain")


def _unsafe_replacement(response):
    return Response(b"x", headerlist=[("X-Bad", "a\nb")])


def _mark(response):
    response.headers["X-Seen"] = "1"


def _boom(response):
    raise ValueError("callback failed")


class Tracked(io.BytesIO):
    def close(self):
        CLOSED.append(self)
        super().close()


def replaced(request):
    after_this_request(_replace)
    return HttpResponse("original")


def replaced_then_more(request):
    after_this_request(_replace)
    after_this_request(_mark)
    return HttpResponse("original")


def replaced_stream(request):
    after_this_request(_replace)
    return StreamingHttpResponse(iter([b"orig"]))


def failing_replacement_stream(request):
    after_this_request(_unsafe_replacement)
    return StreamingHttpResponse(iter([b"chunk1 ", b"chunk2"]))


def marked_file(request):
    after_this_request(_mark)
    return FileResponse(io.BytesIO(b"file data"), content_type="application/octet-stream")


async def _async_chunks():
    yield b"async "
    yield b"chunks"


def marked_async_stream(request):
    after_this_request(_mark)
    return StreamingHttpResponse(_async_chunks())


def failing_file(request):
    after_this_request(_boom)
    return FileResponse(Tracked(b"file contents"))


def same_name_cookies(request):
    @after_this_request
    def move_cookie(response):
        response.delete_cookie("pref", path="/old")
        response.set_cookie("pref", "new", path="/")

    return HttpResponse("cookies")


urlpatterns = [
    path("replaced/", replaced),
    path("replaced-stream/", replaced_stream),
    path("replaced-then-more/", replaced_then_more),
    path("failing-replacement-stream/", failing_replacement_stream),
    path("marked-file/", marked_file),
    path("marked-async-stream/", marked_async_stream),
    path("failing-file/", failing_file),
    path("same-name-cookies/", same_name_cookies),
]
