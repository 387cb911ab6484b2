"""The demo from the README: the language-cookie app behind deferware, loaded
from demo/demo.ini, in-process and through a real server on 127.0.0.1."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from paste.deploy import loadapp
from webtest import TestApp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "config:" + os.path.join(ROOT, "demo", "demo.ini")


@pytest.fixture
def demo_app() -> TestApp:
    return TestApp(loadapp(CONFIG))


def test_first_visit_gets_the_language_cookie(demo_app: TestApp) -> None:
    response = demo_app.get("/", headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    assert response.text == "Hallo! (language: de)\n"
    assert response.headers["Set-Cookie"].startswith("user_lang=de;")


def test_second_visit_with_the_cookie_gets_none(demo_app: TestApp) -> None:
    demo_app.set_cookie("user_lang", "fr")
    response = demo_app.get("/", headers={"Accept-Language": "de"})
    assert response.text == "Bonjour! (language: fr)\n"
    assert "Set-Cookie" not in response.headers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, headers: dict[str, str]) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/", headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_demo_served_by_a_real_server() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "demo", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the demo server did not start within 20 s"
                time.sleep(0.05)
        first = _get(port, {"Accept-Language": "es"})
        assert first.status == 200
        assert (first.getheader("Set-Cookie") or "").startswith("user_lang=es;")
        second = _get(port, {"Accept-Language": "es", "Cookie": "user_lang=es"})
        assert second.status == 200
        assert second.getheader("Set-Cookie") is None
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()
    assert process.returncode is not None


def test_demo_prints_its_url_once_listening() -> None:
    # Port 0: the demo picks a free port and must print the real one; the URL is
    # printed only once the socket listens, so connecting at once must work.
    process = subprocess.Popen(
        [sys.executable, "-m", "demo", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", first_line)
        assert match, first_line
        response = _get(int(match.group(1)), {"Accept-Language": "fr"})
        assert response.status == 200
        assert (response.getheader("Set-Cookie") or "").startswith("user_lang=fr;")
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()
