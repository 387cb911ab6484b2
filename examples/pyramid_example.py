"""Pyramid: remember the visitor's language in a cookie, set from a NewRequest subscriber.

``main`` is the usual Pyramid application factory; ``pyramid_example.ini`` puts
deferware in front of it in a ``[pipeline:main]``, so ``pserve`` serves both
(from this directory: ``PYTHONPATH=. pserve pyramid_example.ini``).
Pyramid's own ``request.add_response_callback`` callbacks run inside the router,
so they run before deferware's.
"""

from pyramid.config import Configurator
from pyramid.events import NewRequest
from pyramid.response import Response

from deferware import after_this_request

LANGUAGES = ("en", "de", "fr")


def detect_user_language(event):
    request = event.request
    language = request.cookies.get("user_lang")
    if language is None:
        language = request.accept_language.lookup(LANGUAGES, default="en")

        @after_this_request(environ=request.environ)
        def remember_language(response):
            response.set_cookie("user_lang", language, max_age=365 * 24 * 3600)

    request.language = language


def index(request):
    return Response({"en": "Hello", "de": "Hallo", "fr": "Bonjour"}[request.language])


def main(global_config, **settings):
    with Configurator(settings=settings) as config:
        config.add_subscriber(detect_user_language, NewRequest)
        config.add_route("index", "/")
        config.add_view(index, route_name="index")
        return config.make_wsgi_app()
