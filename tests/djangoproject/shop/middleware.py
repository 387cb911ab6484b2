"""A project middleware that knows nothing of the response it will change."""

from webob.acceptparse import create_accept_language_header

from deferware import after_this_request

LANGUAGES = ("en", "de", "fr")


def language_cookie(get_response):
    def middleware(request):
        language = request.COOKIES.get("user_lang")
        if language is None:
            accept = create_accept_language_header(request.headers.get("Accept-Language"))
            language = accept.lookup(LANGUAGES, default="en")

            @after_this_request
            def remember_language(response):
                response.set_cookie("user_lang", language, max_age=365 * 24 * 3600)

        request.language = language
        return get_response(request)

    return middleware
