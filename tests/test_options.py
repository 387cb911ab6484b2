"""DeferMiddleware options: one table of values, given as keywords and as
PasteDeploy ini strings (tests/configs/options.ini has a pipeline per row)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from deferware_ini_apps import CallbackFailed, make_app
from paste.deploy import loadapp
from webtest import TestApp

from deferware import DeferMiddleware

CONFIGS = Path(__file__).parent / "configs"
UNSET = object()

# (value given, result as a keyword, result as an ini string); an exception
# class means a ValueError naming the option, the accepted values and the value.
# The two paths share one parser, so they accept the same values.
OPTION_CASES = [
    pytest.param(UNSET, "raise", "raise", id="default"),
    pytest.param("raise", "raise", "raise", id="raise"),
    pytest.param("log", "log", "log", id="log"),
    pytest.param("LOG", "log", "log", id="upper-case"),
    pytest.param("Raise", "raise", "raise", id="mixed-case"),
    pytest.param("bogus", ValueError, ValueError, id="bogus"),
    pytest.param("", ValueError, ValueError, id="empty"),
    pytest.param("true", ValueError, ValueError, id="boolean-word"),
    pytest.param("logs", ValueError, ValueError, id="near-miss"),
]


def _error_match(value):
    return rf"option 'on_callback_error' must be one of 'raise', 'log'; got {value!r}\."


def _check_behaviour(middleware, expected, caplog):
    """A raising callback propagates under 'raise'; under 'log' it is logged and
    the callbacks around it still apply."""
    app = TestApp(middleware)
    if expected == "raise":
        with pytest.raises(CallbackFailed):
            app.get("/")
        return
    with caplog.at_level(logging.ERROR, logger="deferware"):
        result = app.get("/")
    assert result.headers["X-Before"] == "1"
    assert result.headers["X-After"] == "1"
    assert "X-Failing" not in result.headers
    assert any(record.name == "deferware" and record.levelno == logging.ERROR for record in caplog.records)


@pytest.mark.parametrize(("value", "as_keyword", "as_ini"), OPTION_CASES)
def test_option_as_keyword(value, as_keyword, as_ini, caplog):
    options = {} if value is UNSET else {"on_callback_error": value}
    if as_keyword is ValueError:
        with pytest.raises(ValueError, match=_error_match(value)):
            DeferMiddleware(make_app({}), **options)
        return

    middleware = DeferMiddleware(make_app({}), **options)

    assert middleware.options == {"on_callback_error": as_keyword}
    _check_behaviour(middleware, as_keyword, caplog)


@pytest.mark.parametrize(("value", "as_keyword", "as_ini"), OPTION_CASES)
def test_option_as_ini_string(request, value, as_keyword, as_ini, caplog):
    uri = f"config:options.ini#{request.node.callspec.id}"
    if as_ini is ValueError:
        with pytest.raises(ValueError, match=_error_match(value)):
            loadapp(uri, relative_to=str(CONFIGS))
        return

    middleware = loadapp(uri, relative_to=str(CONFIGS))

    assert isinstance(middleware, DeferMiddleware)
    assert middleware.options == {"on_callback_error": as_ini}
    _check_behaviour(middleware, as_ini, caplog)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="none"),
        pytest.param(True, id="true"),
        pytest.param(0, id="zero"),
        pytest.param(b"log", id="bytes"),
    ],
)
def test_keyword_values_are_not_coerced(value):
    with pytest.raises(ValueError, match=_error_match(value)):
        DeferMiddleware(make_app({}), on_callback_error=value)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        DeferMiddleware(make_app({}), "log")


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="on_callback_eror"):
        DeferMiddleware(make_app({}), on_callback_eror="log")


def test_non_callable_app_is_a_type_error():
    with pytest.raises(TypeError, match="DeferMiddleware needs a WSGI application"):
        DeferMiddleware("not an app")
