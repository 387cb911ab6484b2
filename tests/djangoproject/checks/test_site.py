"""The site's own tests, as a Django project has them: Django's test Client and
pytest-django's ``client``, with deferware's middleware in MIDDLEWARE and no
WSGI wrapper (neither goes through wsgi.py)."""

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client


def test_pytest_django_client_gets_the_language_cookie(client):
    response = client.get("/", HTTP_ACCEPT_LANGUAGE="de")
    assert response.content == b"Hallo"
    assert response.cookies["user_lang"].value == "de"
    assert response.headers["X-Deferred"] == "yes"


def test_django_test_client_known_language_sets_no_cookie():
    client = Client()
    client.cookies["user_lang"] = "fr"
    response = client.get("/")
    assert response.content == b"Bonjour"
    assert "user_lang" not in response.cookies
    assert response.headers["X-Deferred"] == "yes"


def test_streaming_response_stays_streamed(client):
    response = client.get("/stream/")
    assert response.streaming
    assert response.headers["X-Deferred"] == "yes"
    assert b"".join(response.streaming_content) == b"first\nsecond\n"


def test_file_response(client):
    response = client.get("/file/")
    assert response.headers["X-Deferred"] == "yes"
    assert b"".join(response.streaming_content) == b"0123456789" * 1000


def test_async_view(client):
    response = client.get("/async/")
    assert response.content == b"async"
    assert response.headers["X-Deferred"] == "yes"


def test_404_page_gets_the_callbacks(client):
    response = client.get("/missing/", HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 404
    assert response.cookies["user_lang"].value == "fr"


def test_500_page_gets_the_callbacks():
    client = Client(raise_request_exception=False)
    response = client.get("/boom/", HTTP_ACCEPT_LANGUAGE="de")
    assert response.status_code == 500
    assert response.cookies["user_lang"].value == "de"


def test_admin_login_with_csrf():
    User.objects.create_superuser("admin", "admin@example.com", "secret-pass")
    client = Client(enforce_csrf_checks=True)
    page = client.get("/admin/login/", HTTP_ACCEPT_LANGUAGE="de")
    assert page.cookies["user_lang"].value == "de"
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "admin", "password": "secret-pass", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_close_callbacks_run_before_request_finished(client):
    # (The test Client keeps database connections open on purpose; the real
    # servers in deferware's own tests check that the connection is closed.)
    client.get("/audit/")
    lines = client.get("/audit-log/").content.decode().splitlines()
    assert lines[0] == "callback used the database"
    assert lines[1].startswith("request_finished:")


@pytest.mark.parametrize("path", ["/", "/stream/"])
def test_a_registration_after_the_response_is_refused(client, path):
    from deferware import ResponseAlreadyStarted, after_this_request

    response = client.get(path)
    with pytest.raises(ResponseAlreadyStarted):
        after_this_request(lambda r: None, environ=response.wsgi_request.META)
