"""Plain WSGI: remember the visitor's language in a cookie, with no framework at all.

``detect_user_language`` knows only the environ and nothing about the response;
when the ``user_lang`` cookie is missing it guesses the language and asks
deferware to set the cookie on whatever response the application ends with.
Serve ``application`` with any WSGI server (``waitress-serve wsgi_example:application``).
"""

import logging
from http.cookies import SimpleCookie

from webob.acceptparse import create_accept_language_header

from deferware import DeferMiddleware, after_this_request, call_on_close

LANGUAGES = ("en", "de", "fr")
GREETINGS = {"en": "Hello", "de": "Hallo", "fr": "Bonjour"}
log = logging.getLogger(__name__)


def detect_user_language(environ):
    cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    if "user_lang" in cookie and cookie["user_lang"].value in LANGUAGES:
        return cookie["user_lang"].value
    accept = create_accept_language_header(environ.get("HTTP_ACCEPT_LANGUAGE"))
    language = accept.lookup(LANGUAGES, default="en")

    @after_this_request
    def remember_language(response):  # a webob.Response
        response.set_cookie("user_lang", language, max_age=365 * 24 * 3600)

    # Runs once the response was sent (when the server closes it).
    call_on_close(lambda: log.info("guessed %s for a new visitor", language))
    return language


def app(environ, start_response):
    language = detect_user_language(environ)
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [GREETINGS[language].encode()]


application = DeferMiddleware(app)
