"""The PasteDeploy filter (``use = egg:deferware``): loading real ini files, and
the strict errors at load time."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from paste.deploy import loadapp, loadfilter
from webtest import TestApp

from deferware import DeferMiddleware

CONFIGS = Path(__file__).parent / "configs"


def _load(name, **variables):
    return loadapp(f"config:{name}", relative_to=str(CONFIGS), global_conf=variables)


def test_pipeline_main_wraps_the_app_with_the_options_given(caplog):
    application = _load("basic.ini")

    assert isinstance(application, DeferMiddleware)
    assert application.options == {"on_callback_error": "log"}
    with caplog.at_level(logging.ERROR, logger="deferware"):
        result = TestApp(application).get("/")
    assert result.body == b"from the ini app"
    assert result.headers["X-Before"] == "1"
    assert result.headers["X-After"] == "1"
    assert "X-Failing" not in result.headers


def test_filter_loads_on_its_own_by_egg_name():
    make_filter = loadfilter("config:basic.ini#deferware", relative_to=str(CONFIGS))
    inner = _load("options.ini#raise").app

    wrapped = make_filter(inner)

    assert isinstance(wrapped, DeferMiddleware)
    assert wrapped.app is inner
    assert wrapped.options == {"on_callback_error": "log"}


@pytest.mark.parametrize(
    ("config", "match"),
    [
        pytest.param(
            "unknown_option.ini",
            r"Unknown deferware option\(s\) 'on_callback_eror' in the ini section with "
            r"'use = egg:deferware'\. Known options: 'on_callback_error'\.",
            id="unknown-option",
        ),
        pytest.param(
            "option_in_default.ini",
            r"deferware option\(s\) 'on_callback_error' found in the global configuration "
            r"\(\[DEFAULT\], a 'set' line, or a variable of that name.*Set it in the ini section "
            r"with 'use = egg:deferware'.*%\(callback_errors\)s",
            id="option-in-default",
        ),
        pytest.param(
            "option_set_line.ini",
            r"deferware option\(s\) 'on_callback_error' found in the global configuration",
            id="option-in-a-set-line",
        ),
        pytest.param(
            "bad_value.ini",
            r"DeferMiddleware option 'on_callback_error' must be one of 'raise', 'log'; got 'warn'\.",
            id="bad-value",
        ),
    ],
)
def test_bad_configuration_fails_at_load_time(config, match):
    with pytest.raises(ValueError, match=match):
        _load(config)


def test_the_middleware_class_named_as_the_factory_is_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"got a dict\. From an ini file.*Write 'use = egg:deferware'"):
        _load("class_as_factory.ini")


def test_an_option_from_a_variable_of_another_name_is_taken():
    assert _load("option_from_variable.ini", callback_errors="log").options == {"on_callback_error": "log"}


def test_a_variable_named_like_the_option_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"a variable of that name.*%\(callback_errors\)s"):
        _load("option_from_variable.ini", callback_errors="log", on_callback_error="log")
