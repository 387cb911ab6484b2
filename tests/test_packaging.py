"""What the installed distribution says about itself."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re

import deferware
import deferware.paste


def test_runtime_requirements_are_webob_only():
    requirements = importlib.metadata.requires("deferware") or []
    runtime = [requirement for requirement in requirements if "extra ==" not in requirement]

    assert [re.split(r"[<>=!~ ;\[]", requirement)[0].lower() for requirement in runtime] == ["webob"]


def test_version_matches_the_package():
    assert importlib.metadata.version("deferware") == deferware.__version__


def test_paste_filter_factory_entry_point_resolves():
    ours = importlib.metadata.distribution("deferware").entry_points
    [entry_point] = ours.select(group="paste.filter_factory")

    assert entry_point.name == "main"
    assert entry_point.value == "deferware.paste:filter_factory"
    assert entry_point.load() is deferware.paste.filter_factory


def test_py_typed_is_shipped():
    assert importlib.resources.files("deferware").joinpath("py.typed").is_file()
    files = importlib.metadata.distribution("deferware").files or []
    assert "deferware/py.typed" in [file.as_posix() for file in files]
