"""Django, natively: a startproject-shaped site (``tests/djangoproject``) with
``deferware.django.DeferwareMiddleware`` first in MIDDLEWARE and nothing else
changed. Its own tests (Django's test Client and pytest-django's ``client``)
run in a subprocess, as its developers would run them; then it is served by a
real WSGI server (gunicorn) and a real ASGI server (uvicorn) on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, ClassVar

import pytest
from servers import running_server, unavailable

PROJECT = Path(__file__).resolve().parent / "djangoproject"


@pytest.fixture(scope="module")
def site_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The site's environment, with a migrated database of its own."""
    database = tmp_path_factory.mktemp("django") / "db.sqlite3"
    env = {**os.environ, "SHOP_DATABASE": str(database), "DJANGO_SETTINGS_MODULE": "mysite.settings"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, cwd=PROJECT, env=env, check=True, timeout=120)
    create = (
        "from django.contrib.auth.models import User; User.objects.create_superuser('admin', '', 'pw-1234')"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", create], cwd=PROJECT, env=env, check=True, timeout=120
    )
    return env


def test_the_sites_own_tests_pass_under_the_test_client_and_pytest_django(site_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=PROJECT,
        env=site_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    passed = re.search(r"\b(\d+) passed\b", result.stdout)
    assert passed and int(passed.group(1)) >= 19, result.stdout[-2000:]


class Browser:
    """An HTTP/1.1 client on one keep-alive connection that keeps cookies."""

    opened: ClassVar[list[Browser]] = []

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}
        self.opened.append(self)

    @classmethod
    def close_all(cls) -> None:
        while cls.opened:
            cls.opened.pop().connection.close()

    def request(self, method: str, path: str, body: str = "", **headers: str) -> tuple[int, Any, bytes]:
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, path, body=body or None, headers=headers)
        response = self.connection.getresponse()
        content = response.read()
        for value in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(value).items():
                self.cookies[name] = morsel.value
        return response.status, response.headers, content


@pytest.mark.parametrize(
    ("kind", "app"), [("gunicorn-sync", "mysite.wsgi:application"), ("uvicorn", "mysite.asgi:application")]
)
def test_the_site_under_a_real_server(kind: str, app: str, site_env: dict[str, str], tmp_path: Path) -> None:
    reason = unavailable(kind)
    if reason:
        pytest.skip(reason)
    with running_server(kind, app, tmp_path / "server.log", env=site_env, cwd=PROJECT) as (port, _):
        try:
            _visit(port)
        finally:
            Browser.close_all()


def _visit(port: int) -> None:
    """What a visitor does: each page, the error pages, the admin login, an audit."""
    browser = Browser(port)
    status, headers, body = browser.request("GET", "/", **{"Accept-Language": "de"})
    assert (status, body, headers["X-Deferred"]) == (200, b"Hallo", "yes")
    assert browser.cookies["user_lang"] == "de"

    status, headers, body = browser.request("GET", "/stream/")
    assert (status, body, headers["X-Deferred"]) == (200, b"first\nsecond\n", "yes")
    assert "Content-Length" not in headers  # streamed, not buffered
    status, headers, body = browser.request("GET", "/file/")
    assert (status, body, headers["X-Deferred"]) == (200, b"0123456789" * 1000, "yes")
    status, headers, body = browser.request("GET", "/async/")
    assert (status, body, headers["X-Deferred"]) == (200, b"async", "yes")

    fresh = Browser(port)
    assert fresh.request("GET", "/missing/", **{"Accept-Language": "fr"})[0] == 404
    assert fresh.cookies["user_lang"] == "fr"
    assert Browser(port).request("GET", "/boom/", **{"Accept-Language": "de"})[0] == 500

    status, _, page = browser.request("GET", "/admin/login/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()  # type: ignore[union-attr]
    form = f"username=admin&password=pw-1234&csrfmiddlewaretoken={token}"
    status, headers, _ = browser.request("POST", "/admin/login/?next=/admin/", body=form)
    assert (status, headers["Location"]) == (302, "/admin/")
    assert browser.request("GET", "/admin/")[0] == 200

    browser.request("GET", "/audit/")
    # The close callbacks run when the server closes the response, which may come after the
    # client has read it (an ASGI server closes it after sending the body): ask until they ran.
    expected = ["callback used the database", "request_finished: connection closed=True"]
    deadline = time.monotonic() + 10
    for _ in range(200):
        log = browser.request("GET", "/audit-log/")[2].decode().splitlines()
        if log == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert log == expected
