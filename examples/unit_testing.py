"""Unit tests for code that registers callbacks, with ``deferware.testing.deferred``.

No server and no ``DeferMiddleware``: ``deferred(environ)`` makes the request
active for the ``with`` block, ``apply()`` runs the collected callbacks on a
response as the middleware would, and ``close()`` runs the close callbacks.
"""

from webob import Response
from webob.acceptparse import create_accept_language_header

from deferware import after_this_request, call_on_close
from deferware.testing import deferred

LANGUAGES = ("en", "de", "fr")
AUDIT_LOG = []


# The code under test, e.g. called from a before-request hook.
def detect_user_language(environ):
    if "user_lang=" in environ.get("HTTP_COOKIE", ""):
        return
    accept = create_accept_language_header(environ.get("HTTP_ACCEPT_LANGUAGE"))
    language = accept.lookup(LANGUAGES, default="en")

    @after_this_request
    def remember_language(response):
        response.set_cookie("user_lang", language)

    call_on_close(lambda: AUDIT_LOG.append(f"guessed {language}"))


# The tests.
def test_language_cookie_is_set():
    environ = {"HTTP_ACCEPT_LANGUAGE": "fr;q=0.5, de"}
    with deferred(environ) as d:
        detect_user_language(environ)
    response = d.apply(Response("hello"))
    assert response.headers["Set-Cookie"].startswith("user_lang=de;")
    assert AUDIT_LOG[-1:] != ["guessed de"]  # close callbacks run only on close()
    d.close()
    assert AUDIT_LOG[-1:] == ["guessed de"]


def test_known_language_registers_nothing():
    environ = {"HTTP_COOKIE": "user_lang=fr", "HTTP_ACCEPT_LANGUAGE": "de"}
    with deferred(environ) as d:
        detect_user_language(environ)
    assert d.callbacks == []
    assert d.close_callbacks == []
    assert "Set-Cookie" not in d.apply().headers
