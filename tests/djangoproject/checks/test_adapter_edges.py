"""The Django middleware's edge cases: replacements, the "log" policy, a failing
callback, file responses, async streaming, cookies Django cannot hold."""

import logging

import pytest
from asgiref.sync import async_to_sync
from django.core.wsgi import get_wsgi_application
from django.test import AsyncClient, Client, override_settings
from webob import Request

from checks import edge_urls

pytestmark = pytest.mark.urls("checks.edge_urls")


def test_a_replacement_with_a_generator_body_is_sent_whole():
    assert Client().get("/replaced/").content == b"replaced body"
    response = Client().get("/replaced-stream/")
    assert b"".join(response.streaming_content) == b"replaced body"


@override_settings(DEFERWARE_ON_CALLBACK_ERROR="log")
def test_under_log_a_failed_replacement_leaves_the_streaming_body_whole(caplog):
    response = Client().get("/failing-replacement-stream/")
    assert b"".join(response.streaming_content) == b"chunk1 chunk2"
    assert "_unsafe_replacement raised" in caplog.text


class MarkerWrapper:
    """A server's wsgi.file_wrapper."""

    def __init__(self, filelike, block_size=8192):
        self.filelike = filelike

    def __iter__(self):
        return iter(lambda: self.filelike.read(8192), b"")

    def close(self):
        self.filelike.close()


@pytest.mark.parametrize("policy", ["raise", "log"])
def test_a_file_response_keeps_the_servers_file_wrapper_with_a_header_callback(policy):
    environ = Request.blank("/marked-file/").environ
    environ["wsgi.file_wrapper"] = MarkerWrapper
    got = {}
    with override_settings(DEFERWARE_ON_CALLBACK_ERROR=policy):
        body = get_wsgi_application()(
            environ, lambda status, headers, exc_info=None: got.update(headers=headers)
        )
    try:
        assert dict(got["headers"])["X-Seen"] == "1"
        assert isinstance(body, MarkerWrapper)
    finally:
        body.close()


@pytest.mark.parametrize("policy", ["raise", "log"])
def test_an_async_streaming_response_gets_header_callbacks(policy):
    async def get():
        with override_settings(DEFERWARE_ON_CALLBACK_ERROR=policy):
            response = await AsyncClient().get("/marked-async-stream/")
        return response, b"".join([chunk async for chunk in response.streaming_content])

    response, body = async_to_sync(get)()
    assert response["X-Seen"] == "1"
    assert body == b"async chunks"


def test_a_failing_callback_still_closes_djangos_response():
    response = Client(raise_request_exception=False).get("/failing-file/")
    assert response.status_code == 500
    assert len(edge_urls.CLOSED) == 1


def test_two_cookies_of_one_name_are_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="deferware"):
        response = Client().get("/same-name-cookies/")
    assert response.cookies["pref"].value == "new"
    assert "Django keeps one cookie per name" in caplog.text


@override_settings(DEFERWARE_ON_CALLBACK_ERROR="log")
def test_under_log_a_replacement_with_a_generator_body_is_sent_whole():
    # A later callback counts the replacement's body: what goes out must not be closed first.
    assert Client().get("/replaced-then-more/").content == b"replaced body"
