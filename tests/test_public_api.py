"""The public names of deferware, pinned."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import deferware

ROOT = Path(__file__).resolve().parent.parent


def test_all_is_pinned():
    assert sorted(deferware.__all__) == [
        "CloseCallback",
        "DeferMiddleware",
        "ENVIRON_KEY",
        "InvalidHeader",
        "NoActiveRequest",
        "ResponseAlreadyStarted",
        "ResponseCallback",
        "after_this_request",
        "call_on_close",
        "request_active",
    ]
    assert len(deferware.__all__) == len(set(deferware.__all__))


@pytest.mark.parametrize("name", deferware.__all__)
def test_public_names_exist_and_are_documented(name):
    value = getattr(deferware, name)
    if name in ("ENVIRON_KEY", "ResponseCallback", "CloseCallback"):  # data: documented in docs/api.rst
        assert f".. data:: {name}" in (ROOT / "docs" / "api.rst").read_text()
    else:
        assert inspect.getdoc(value)


def test_environ_key():
    assert deferware.ENVIRON_KEY == "deferware.registry"


@pytest.mark.parametrize(
    ("exception", "base"),
    [
        pytest.param(deferware.NoActiveRequest, RuntimeError, id="NoActiveRequest"),
        pytest.param(deferware.ResponseAlreadyStarted, RuntimeError, id="ResponseAlreadyStarted"),
        pytest.param(deferware.InvalidHeader, ValueError, id="InvalidHeader"),
    ],
)
def test_exceptions_derive_from_the_built_in_kind(exception, base):
    assert issubclass(exception, base)
    assert exception.__module__ == "deferware.exceptions"


def test_options_are_keyword_only_in_the_signature():
    parameters = inspect.signature(deferware.DeferMiddleware).parameters
    assert list(parameters) == ["app", "on_callback_error"]
    assert parameters["on_callback_error"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["on_callback_error"].default == "raise"


@pytest.mark.parametrize("api", [deferware.after_this_request, deferware.call_on_close])
def test_registration_environ_is_keyword_only(api):
    parameters = inspect.signature(api).parameters
    assert list(parameters) == ["func", "environ"]
    assert parameters["environ"].kind is inspect.Parameter.KEYWORD_ONLY
