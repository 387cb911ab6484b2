"""Django: remember the visitor's language in a cookie, set from a middleware.

A whole project in one file so that it can be run and tested as it is; in a real
project the parts below live in settings.py, a middleware module, urls.py and
wsgi.py, and only the last line of wsgi.py changes.
"""

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.urls import path
from webob.acceptparse import create_accept_language_header

from deferware import DeferMiddleware, after_this_request

LANGUAGES = ("en", "de", "fr")

# settings.py
if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="change-me",
        ALLOWED_HOSTS=["localhost", "127.0.0.1"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[f"{__name__}.LanguageCookieMiddleware"],
    )


# middleware.py


class LanguageCookieMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        language = request.COOKIES.get("user_lang")
        if language is None:
            accept = create_accept_language_header(request.headers.get("Accept-Language"))
            language = accept.lookup(LANGUAGES, default="en")

            @after_this_request(environ=request.META)
            def remember_language(response):
                response.set_cookie("user_lang", language, max_age=365 * 24 * 3600)

        request.language = language
        return self.get_response(request)


# views.py and urls.py
def index(request):
    return HttpResponse({"en": "Hello", "de": "Hallo", "fr": "Bonjour"}[request.language])


urlpatterns = [path("", index)]

# wsgi.py
application = DeferMiddleware(get_wsgi_application())
