"""Bottle: remember the visitor's language in a cookie, set from a before_request hook.

Bottle's hooks cannot change the response of a route that returns its own
``HTTPResponse`` or raises ``HTTPError``; a deferware callback sees whatever
response Bottle produced, error pages included.
"""

import bottle
from webob.acceptparse import create_accept_language_header

from deferware import DeferMiddleware, after_this_request

LANGUAGES = ("en", "de", "fr")

app = bottle.Bottle()


@app.hook("before_request")
def detect_user_language():
    language = bottle.request.get_cookie("user_lang")
    if language is None:
        accept = create_accept_language_header(bottle.request.headers.get("Accept-Language"))
        language = accept.lookup(LANGUAGES, default="en")

        @after_this_request(environ=bottle.request.environ)
        def remember_language(response):
            response.set_cookie("user_lang", language, max_age=365 * 24 * 3600)

    bottle.request.environ["example.language"] = language


@app.route("/")
def index():
    language = bottle.request.environ["example.language"]
    return {"en": "Hello", "de": "Hallo", "fr": "Bonjour"}[language]


# What the WSGI server serves (e.g. ``waitress-serve bottle_example:application``).
application = DeferMiddleware(app)
