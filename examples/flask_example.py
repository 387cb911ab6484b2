"""Flask: remember the visitor's language in a cookie, set from a before_request hook.

Flask has its own ``after_this_request``; deferware's works the same way from any
code that runs during the request, including code that does not know it runs under
Flask. Both kinds of callback apply; Flask's run first (inside ``app.wsgi_app``).
"""

from flask import Flask, g, request

from deferware import DeferMiddleware, after_this_request

LANGUAGES = ("en", "de", "fr")

app = Flask(__name__)


@app.before_request
def detect_user_language():
    language = request.cookies.get("user_lang")
    if language is None:
        language = request.accept_languages.best_match(LANGUAGES, default="en")

        @after_this_request
        def remember_language(response):
            response.set_cookie("user_lang", language, max_age=365 * 24 * 3600)

    g.language = language


@app.route("/")
def index():
    return {"en": "Hello", "de": "Hallo", "fr": "Bonjour"}[g.language]


# Flask's documented place for WSGI middleware: ``app`` stays the application
# you serve (``flask run``, ``waitress-serve flask_example:app``).
app.wsgi_app = DeferMiddleware(app.wsgi_app)
