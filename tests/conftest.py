"""Fixtures exposing ``support.py``'s sample applications, environ and driver."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import support


@pytest.fixture(params=support.SHAPES)
def shape(request: pytest.FixtureRequest) -> str:
    """Each app shape in turn."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(name="make_app")
def make_app_fixture() -> type[support.SampleApp]:
    return support.make_app


@pytest.fixture(name="counted")
def counted_fixture() -> Callable[[support.App], support.App]:
    return support.counted


@pytest.fixture(name="drive")
def drive_fixture() -> Callable[..., support.Sent]:
    return support.drive


@pytest.fixture(name="wrap")
def wrap_fixture() -> Callable[..., support.App]:
    return support.wrap


@pytest.fixture(name="make_environ")
def make_environ_fixture() -> Callable[..., dict[str, Any]]:
    return support.make_environ
