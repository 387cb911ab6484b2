"""A small WebOb application that greets the user in their language.

``detect_user_language`` runs deep inside the request and knows nothing about
the response; when the ``user_lang`` cookie is missing it guesses the language
from ``Accept-Language`` and asks deferware to set the cookie on whatever
response the request ends with.
"""

from __future__ import annotations

from typing import Any

from webob import Request, Response
from webob.dec import wsgify

from deferware import after_this_request

GREETINGS = {"en": "Hello", "de": "Hallo", "fr": "Bonjour", "es": "Hola"}


def detect_user_language(request: Request) -> str:
    language = request.cookies.get("user_lang")
    if language not in GREETINGS:
        language = request.accept_language.lookup(list(GREETINGS), default="en")

        @after_this_request
        def remember_language(response: Response) -> None:
            response.set_cookie("user_lang", language, max_age=365 * 24 * 3600, samesite="lax")

    return language


@wsgify
def application(request: Request) -> Response:
    language = detect_user_language(request)
    return Response(f"{GREETINGS[language]}! (language: {language})\n", content_type="text/plain")


def make_app(global_conf: dict[str, str], **settings: Any) -> Any:
    """PasteDeploy ``call:`` factory for the demo application."""
    return application
